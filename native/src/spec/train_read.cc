// train_read.cc: see train_read.h.
#include "spec/train_read.h"

#include <cmath>

#include "core/check.h"
#include "spec/program_read.h"
#include "spec/read.h"

namespace loraflow::spec {

namespace {

OptimizerConfig read_optimizer(const Value& o, const std::string& w) {
  OptimizerConfig opt;
  const std::string& kind = text(o, "kind", w);
  LF_CHECK(kind == "adamw" || kind == "sgd", w << ": kind must be adamw or sgd");
  opt.kind = kind == "adamw" ? OptimizerConfig::kAdamW : OptimizerConfig::kSgd;
  opt.lr = number(o, "lr", w);
  opt.weight_decay = number(o, "weightDecay", w);
  const Value& betas = array(o, "betas", w);
  LF_CHECK(betas.size() == 2 && betas.at(0).is_number() && betas.at(1).is_number(), w << ": betas must be two numbers");
  opt.beta1 = betas.at(0).as_number();
  opt.beta2 = betas.at(1).as_number();
  opt.eps = number(o, "eps", w);
  opt.momentum = number(o, "momentum", w);
  opt.warmup = integer(o, "warmup", w);
  const std::string& schedule = text(o, "schedule", w);
  if (schedule == "constant") opt.schedule = OptimizerConfig::kConstant;
  else if (schedule == "constant_with_warmup") opt.schedule = OptimizerConfig::kConstantWithWarmup;
  else if (schedule == "linear") opt.schedule = OptimizerConfig::kLinear;
  else if (schedule == "cosine") opt.schedule = OptimizerConfig::kCosine;
  else LF_CHECK(false, w << ": unknown schedule " << schedule);
  opt.min_lr = number(o, "minLr", w);
  opt.clip = number(o, "clip", w);
  return opt;
}

AdapterSpec read_adapter(Value& o, const LlamaConfig& c, size_t index) {
  const std::string w = "adapters[" + std::to_string(index) + "]";
  AdapterSpec a;
  a.name = text(o, "name", w);
  a.rank = integer(o, "rank", w);
  a.steps = integer(o, "steps", w);
  a.schedule_steps = integer(o, "scheduleSteps", w);
  a.save_every = o.has("saveEvery") ? integer(o, "saveEvery", w) : 0;
  a.eval_every = o.has("evalEvery") ? integer(o, "evalEvery", w) : 0;
  LF_CHECK(a.eval_every >= 0, w << ": evalEvery " << a.eval_every);
  a.batch = integer(o, "batch", w);
  a.micro_batch = integer(o, "microBatch", w);
  a.scale = number(o, "scale", w);
  a.dropout = number(o, "dropout", w);
  a.seed = static_cast<uint64_t>(integer(o, "seed", w));
  LF_CHECK(a.schedule_steps >= a.steps, w << ": scheduleSteps below steps");
  LF_CHECK(a.rank > 0 && a.steps > 0 && a.batch > 0 && a.micro_batch > 0 && a.dropout >= 0 && a.dropout < 1, w << ": bad sizes");
  LF_CHECK(a.batch % a.micro_batch == 0, w << ": micro_batch " << a.micro_batch << " does not divide batch " << a.batch);
  LF_CHECK(a.steps <= (int64_t(1) << 31) && a.batch <= (int64_t(1) << 16) && a.rank <= (int64_t(1) << 16), w << ": steps, batch or rank out of range");
  LF_CHECK(a.save_every >= 0 && std::isfinite(a.scale), w << ": bad saveEvery or scale");
  a.optimizer = read_optimizer(object(o, "optimizer", w), w + ".optimizer");
  Value& sites = object(o, "sites", w);
  // Each site once: the map's key would hide a second.
  LF_CHECK(sites.members().size() <= static_cast<size_t>(c.layers * kModules), w << ": more sites than the model has");
  for (size_t k = 0; k < sites.members().size(); k++) {
    const std::string key = sites.members()[k].first;
    const auto [layer, module] = lora_site(key, c, w);
    Value& so = *sites.find(key);
    LF_CHECK(a.init.count({layer, module}) == 0, w << ": site `" << key << "` twice");
    a.init[{layer, module}] = {floats(field(so, "A", w), a.rank * module_in(c, module), w + "." + key + ".A"),
                               floats(field(so, "B", w), module_out(c, module) * a.rank, w + "." + key + ".B")};
  }
  // Resuming: the steps done and the optimizer's moments of each site (absent: zeros).
  a.steps_done = o.has("stepsDone") ? integer(o, "stepsDone", w) : 0;
  LF_CHECK(a.steps_done >= 0 && a.steps_done <= a.steps, w << ": stepsDone " << a.steps_done << " of " << a.steps << " steps");
  if (o.has("moments")) {
    Value& moments = object(o, "moments", w);
    const int64_t k = optimizer_moments(a.optimizer);
    for (size_t i = 0; i < moments.members().size(); i++) {
      const std::string key = moments.members()[i].first;
      const auto site = lora_site(key, c, w);
      auto ab = a.init.find(site);
      LF_CHECK(ab != a.init.end(), w << ": moments for `" << key << "`, which is not one of the adapter's sites");
      LF_CHECK(a.moments.count(site) == 0, w << ": moments of `" << key << "` twice");
      const int64_t n = static_cast<int64_t>(ab->second.first.size() + ab->second.second.size());
      a.moments[site] = floats(*moments.find(key), k * n, w + ".moments." + key);
    }
  }
  Value& d = object(o, "data", w);
  const std::string dw = w + ".data";
  a.data.sequences = integer(d, "sequences", dw);
  a.data.seq_len = integer(d, "seqLen", dw);
  LF_CHECK(a.data.sequences > 0 && a.data.seq_len > 0 && a.data.seq_len <= (int64_t(1) << 24) && a.data.sequences <= (int64_t(1) << 31) / a.data.seq_len,
           dw << ": " << a.data.sequences << " sequences of " << a.data.seq_len << " tokens are out of range");
  const int64_t n = a.data.sequences * a.data.seq_len;
  a.data.tokens = ints(field(d, "tokens", dw), n, dw + ".tokens");
  a.data.targets = ints(field(d, "targets", dw), n, dw + ".targets");
  a.data.seg_start = ints(field(d, "segStart", dw), n, dw + ".segStart");
  a.data.pos = ints(field(d, "pos", dw), n, dw + ".pos");
  a.data.order = ints(field(d, "order", dw), a.steps * a.batch, dw + ".order");
  a.data.step_tokens = typed<double>(field(d, "stepTokens", dw), a.steps, dw + ".stepTokens");
  for (int64_t i = 0; i < n; i++) {
    LF_CHECK(a.data.tokens[i] >= 0 && a.data.tokens[i] < c.vocab, dw << ": token " << a.data.tokens[i] << " is outside the vocabulary of " << c.vocab);
    LF_CHECK(a.data.targets[i] == -100 || (a.data.targets[i] >= 0 && a.data.targets[i] < c.vocab), dw << ": label " << a.data.targets[i] << " is outside the vocabulary");
    LF_CHECK(a.data.seg_start[i] >= 0 && a.data.seg_start[i] <= i % a.data.seq_len, dw << ": segStart out of range");
  }
  for (int32_t s : a.data.order) LF_CHECK(s >= 0 && s < a.data.sequences, dw << ": order names sequence " << s << " of " << a.data.sequences);
  for (double t : a.data.step_tokens) LF_CHECK(std::isfinite(t) && t >= 0, dw << ": stepTokens must be counts");
  return a;
}

// Every index the engine will follow is checked here, at its boundary: a plan is checked by
// readPlan too, but the engine must never read out of bounds whatever it is handed.
PhaseSpec read_phase(Value& o, size_t index, size_t stages, const std::vector<AdapterSpec>& adapter_specs) {
  const size_t adapters = adapter_specs.size();
  const std::string w = "phases[" + std::to_string(index) + "]";
  PhaseSpec p;
  p.rounds = integer(o, "rounds", w);
  LF_CHECK(p.rounds >= 1 && p.rounds <= (int64_t(1) << 31), w << ": rounds " << p.rounds << " out of range");
  const Value& ads = array(o, "adapters", w);
  std::vector<bool> in_phase(adapters, false);
  for (size_t i = 0; i < ads.size(); i++) {
    const double x = ads.at(i).is_number() ? ads.at(i).as_number() : -1;
    LF_CHECK(x == std::floor(x) && x >= 0 && x < 1e9, w << ": adapters must be whole numbers");
    const int a = static_cast<int>(x);
    LF_CHECK(a >= 0 && static_cast<size_t>(a) < adapters && !in_phase[static_cast<size_t>(a)], w << ": adapter " << a << " does not exist or is listed twice");
    in_phase[static_cast<size_t>(a)] = true;
    p.adapters.push_back(a);
  }
  const Value& mbs = array(o, "microBatches", w);
  for (size_t i = 0; i < mbs.size(); i++) {
    LF_CHECK(mbs.at(i).is_array(), w << ": micro-batch " << i << " must be an array of parts");
    const Value& parts = mbs.at(i);
    LF_CHECK(parts.size() > 0, w << ": micro-batch " << i << " has no parts");
    std::vector<PhaseSpec::Part> list;
    for (size_t j = 0; j < parts.size(); j++) {
      LF_CHECK(parts.at(j).is_object(), w << ": micro-batch " << i << " part " << j << " must be an object");
      const Value& po = parts.at(j);
      const int64_t adapter = integer(po, "adapter", w);
      LF_CHECK(adapter >= 0 && static_cast<size_t>(adapter) < adapters && in_phase[static_cast<size_t>(adapter)], w << ": micro-batch " << i << " names adapter " << adapter << ", not one of the phase's");
      PhaseSpec::Part part{static_cast<int>(adapter), integer(po, "step", w), integer(po, "index", w), integer(po, "sequences", w)};
      const AdapterSpec& as = adapter_specs[static_cast<size_t>(adapter)];
      // build_rows reads sequences index * sequences + i of the step's batch: all must be in it.
      LF_CHECK(part.sequences == as.micro_batch, w << ": micro-batch " << i << " takes " << part.sequences << " sequences of adapter " << as.name << ", whose micro_batch is " << as.micro_batch);
      LF_CHECK(part.index >= 0 && (part.index + 1) * part.sequences <= as.batch, w << ": micro-batch " << i << " is micro-batch " << part.index << " of a step of " << as.batch / as.micro_batch);
      LF_CHECK(part.step >= 0 && part.step < as.steps, w << ": micro-batch " << i << " is in step " << part.step << " of the round");
      list.push_back(part);
    }
    p.micro_batches.push_back(list);
  }
  Value& actions = array(o, "actions", w);
  LF_CHECK(actions.size() == stages, w << ": " << actions.size() << " action lists for " << stages << " stages");
  for (size_t s = 0; s < actions.size(); s++) {
    auto codes = ints(actions.at(s), -1, w + ".actions");
    LF_CHECK(codes.size() % 4 == 0, w << ": action codes come in fours");
    std::vector<Action> list;
    for (size_t i = 0; i < codes.size(); i += 4) {
      Action a{static_cast<Op>(codes[i]), codes[i + 1], static_cast<Channel>(codes[i + 2]), codes[i + 3]};
      LF_CHECK(codes[i] >= 0 && codes[i] <= 4, w << ": unknown action code " << codes[i]);
      if (a.op == Op::kStep) LF_CHECK(a.peer >= 0 && static_cast<size_t>(a.peer) < adapters && in_phase[static_cast<size_t>(a.peer)], w << ": STEP of adapter " << a.peer << ", not one of the phase's");
      else LF_CHECK(a.mb >= 0 && static_cast<size_t>(a.mb) < p.micro_batches.size(), w << ": micro-batch " << a.mb << " is not in the phase");
      if (a.op == Op::kSend || a.op == Op::kRecv) {
        LF_CHECK(codes[i + 2] == 0 || codes[i + 2] == 1, w << ": unknown channel " << codes[i + 2]);
        LF_CHECK(a.peer >= 0 && static_cast<size_t>(a.peer) < stages && a.peer != static_cast<int>(s), w << ": bad peer " << a.peer);
      }
      list.push_back(a);
    }
    p.actions.push_back(list);
  }
  return p;
}

}  // namespace

Placement read_placement(Value& spec) {
  Placement p;
  if (spec.has("backend")) p.backend = text(spec, "backend", "spec");
  LF_CHECK(p.backend == "cpu" || p.backend == "cuda" || p.backend == "cuda-emulated", "spec: backend must be \"cpu\", \"cuda\" or \"cuda-emulated\", not \"" << p.backend << "\"");
  if (spec.has("devices")) {
    const Value* stages = spec.find("stages");
    const int64_t count = stages != nullptr && stages->is_array() ? static_cast<int64_t>(stages->size()) : 0;
    for (int32_t d : ints(field(spec, "devices", "spec"), count, "spec.devices")) {
      LF_CHECK(d >= 0 && d < 1024, "spec.devices: GPU " << d);
      p.devices.push_back(d);
    }
  }
  return p;
}

TrainSpec read_train_spec(Value& spec, const Placement& placement) {
  TrainSpec t;
  t.config = llama_config(object(spec, "config", "spec"));
  const Value& stages = array(spec, "stages", "spec");
  LF_CHECK(stages.size() >= 1 && stages.size() <= 4096, "spec: " << stages.size() << " stages");
  int64_t next_block = 0;
  for (size_t s = 0; s < stages.size(); s++) {
    LF_CHECK(stages.at(s).is_object(), "stages[" << s << "] must be an object");
    const Value& so = stages.at(s);
    const std::string w = "stages[" + std::to_string(s) + "]";
    const Value& blocks = array(so, "blocks", w);
    auto whole = [](const Value& x) { return x.is_number() && x.as_number() == std::floor(x.as_number()) && std::fabs(x.as_number()) < 1e9; };
    LF_CHECK(blocks.size() == 2 && whole(blocks.at(0)) && whole(blocks.at(1)), w << ": blocks must be [first, last)");
    StageSpec ss;
    ss.first_block = static_cast<int64_t>(blocks.at(0).as_number());
    ss.last_block = static_cast<int64_t>(blocks.at(1).as_number());
    ss.embedding = boolean(so, "embedding", w);
    ss.head = boolean(so, "head", w);
    // Stages tile the model's blocks in order; the embedding is the first's, the head the last's.
    LF_CHECK(ss.first_block == next_block && ss.last_block > ss.first_block && ss.last_block <= 2 * t.config.layers, w << ": blocks [" << ss.first_block << ", " << ss.last_block << ") do not continue from block " << next_block);
    LF_CHECK(ss.embedding == (s == 0) && ss.head == (s + 1 == stages.size()), w << ": the embedding belongs to the first stage, the head to the last");
    next_block = ss.last_block;
    t.stages.push_back(ss);
  }
  LF_CHECK(next_block == 2 * t.config.layers, "spec: the stages cover blocks [0, " << next_block << ") of " << 2 * t.config.layers);
  // A GPU's programs count in bytes (they hold bf16 tensors); the CPU's in fp32 elements.
  ProgramsSpec programs = spec::programs(object(spec, "programs", "spec"), placement.backend == "cpu" ? Units{} : Units{1});
  LF_CHECK(programs.stages.size() == t.stages.size(), "programs: " << programs.stages.size() << " stages for " << t.stages.size());
  t.classes = std::move(programs.classes);
  t.class_of = std::move(programs.class_of);
  for (size_t s = 0; s < t.stages.size(); s++) t.stages[s].compiled = std::move(programs.stages[s]);
  Value& weights = object(spec, "weights", "spec");
  for (size_t i = 0; i < weights.members().size(); i++) {
    const std::string name = weights.members()[i].first;
    t.weights[name] = floats(*weights.find(name), -1, "weights." + name);
  }
  Value& adapters = array(spec, "adapters", "spec");
  for (size_t a = 0; a < adapters.size(); a++) t.adapters.push_back(read_adapter(object_at(adapters, a, "adapters[" + std::to_string(a) + "]"), t.config, a));
  Value& phases = array(spec, "phases", "spec");
  for (size_t p = 0; p < phases.size(); p++) t.phases.push_back(read_phase(object_at(phases, p, "phases[" + std::to_string(p) + "]"), p, t.stages.size(), t.adapters));
  LF_CHECK(t.class_of.size() == t.phases.size(), "programs.classOf has " << t.class_of.size() << " phases for " << t.phases.size());
  t.start_round = spec.has("startRound") ? integer(spec, "startRound", "spec") : 0;
  t.trace_rounds = spec.has("traceRounds") ? integer(spec, "traceRounds", "spec") : 0;
  LF_CHECK(t.trace_rounds >= 0 && t.trace_rounds <= 64, "spec: traceRounds " << t.trace_rounds);
  LF_CHECK(t.start_round >= 0 && t.start_round <= (int64_t(1) << 40), "spec: startRound " << t.start_round);
  t.blas_threads = spec.has("blasThreads") ? static_cast<int>(integer(spec, "blasThreads", "spec")) : 1;
  LF_CHECK(t.blas_threads >= 1 && t.blas_threads <= 1024, "spec: blasThreads " << t.blas_threads);
  return t;
}

}  // namespace loraflow::spec
