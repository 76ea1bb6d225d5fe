// train_binding.cc: `train(spec, onStep)` -> Promise. The spec (a lowered plan, base weights,
// initial adapters, tokenised data) is copied into C++ on the calling thread; training runs on a
// worker thread (Napi::AsyncWorker) that starts one thread per stage, so Node's event loop stays
// free; each optimizer step's loss reaches `onStep` through a thread-safe function while it runs.
#include <napi.h>

#include <cmath>
#include <memory>
#include <string>

#include "binding/js_args.h"
#include "binding/program_args.h"
#include "core/check.h"
#include "cpu/gemm.h"
#include "train/trainer.h"

#ifdef LORAFLOW_HAVE_CBLAS
extern "C" void openblas_set_num_threads(int);
#endif

namespace loraflow {
namespace {


std::vector<float> floats(const Napi::Value& v, int64_t expected, const std::string& what) {
  return js::typed<float, napi_float32_array>(v, expected, what);
}

OptimizerConfig read_optimizer(const Napi::Object& o, const std::string& w) {
  OptimizerConfig opt;
  const std::string kind = js::field(o, "kind", w).As<Napi::String>();
  LF_CHECK(kind == "adamw" || kind == "sgd", w << ": kind must be adamw or sgd");
  opt.kind = kind == "adamw" ? OptimizerConfig::kAdamW : OptimizerConfig::kSgd;
  opt.lr = js::number(o, "lr", w);
  opt.weight_decay = js::number(o, "weightDecay", w);
  Napi::Array betas = js::array(o, "betas", w);
  opt.beta1 = betas.Get(0u).As<Napi::Number>().DoubleValue();
  opt.beta2 = betas.Get(1u).As<Napi::Number>().DoubleValue();
  opt.eps = js::number(o, "eps", w);
  opt.momentum = js::number(o, "momentum", w);
  opt.warmup = js::integer(o, "warmup", w);
  const std::string schedule = js::field(o, "schedule", w).As<Napi::String>();
  LF_CHECK(schedule == "constant" || schedule == "linear" || schedule == "cosine", w << ": unknown schedule " << schedule);
  opt.schedule = schedule == "constant" ? OptimizerConfig::kConstant : schedule == "linear" ? OptimizerConfig::kLinear : OptimizerConfig::kCosine;
  opt.min_lr = js::number(o, "minLr", w);
  opt.clip = js::number(o, "clip", w);
  return opt;
}

AdapterSpec read_adapter(const Napi::Object& o, const LlamaConfig& c, size_t index) {
  const std::string w = "adapters[" + std::to_string(index) + "]";
  AdapterSpec a;
  a.name = js::field(o, "name", w).As<Napi::String>();
  a.rank = js::integer(o, "rank", w);
  a.steps = js::integer(o, "steps", w);
  a.schedule_steps = js::integer(o, "scheduleSteps", w);
  a.save_every = o.Has("saveEvery") ? js::integer(o, "saveEvery", w) : 0;
  a.batch = js::integer(o, "batch", w);
  a.micro_batch = js::integer(o, "microBatch", w);
  a.scale = js::number(o, "scale", w);
  a.dropout = js::number(o, "dropout", w);
  a.seed = static_cast<uint64_t>(js::integer(o, "seed", w));
  LF_CHECK(a.schedule_steps >= a.steps, w << ": scheduleSteps below steps");
  LF_CHECK(a.rank > 0 && a.steps > 0 && a.batch > 0 && a.micro_batch > 0 && a.dropout >= 0 && a.dropout < 1, w << ": bad sizes");
  LF_CHECK(a.batch % a.micro_batch == 0, w << ": micro_batch " << a.micro_batch << " does not divide batch " << a.batch);
  LF_CHECK(a.steps <= (int64_t(1) << 31) && a.batch <= (int64_t(1) << 16) && a.rank <= (int64_t(1) << 16), w << ": steps, batch or rank out of range");
  LF_CHECK(a.save_every >= 0 && std::isfinite(a.scale), w << ": bad saveEvery or scale");
  a.optimizer = read_optimizer(js::object(o, "optimizer", w), w + ".optimizer");
  Napi::Object sites = js::object(o, "sites", w);
  Napi::Array keys = sites.GetPropertyNames();
  for (uint32_t k = 0; k < keys.Length(); k++) {
    const std::string key = keys.Get(k).As<Napi::String>();
    const auto [layer, module] = js::lora_site(key, c, w);
    Napi::Object so = sites.Get(key).As<Napi::Object>();
    a.init[{layer, module}] = {floats(js::field(so, "A", w), a.rank * module_in(c, module), w + "." + key + ".A"),
                               floats(js::field(so, "B", w), module_out(c, module) * a.rank, w + "." + key + ".B")};
  }
  Napi::Object d = js::object(o, "data", w);
  const std::string dw = w + ".data";
  a.data.sequences = js::integer(d, "sequences", dw);
  a.data.seq_len = js::integer(d, "seqLen", dw);
  LF_CHECK(a.data.sequences > 0 && a.data.seq_len > 0 && a.data.seq_len <= (int64_t(1) << 24) && a.data.sequences <= (int64_t(1) << 31) / a.data.seq_len,
           dw << ": " << a.data.sequences << " sequences of " << a.data.seq_len << " tokens are out of range");
  const int64_t n = a.data.sequences * a.data.seq_len;
  a.data.tokens = js::ints(js::field(d, "tokens", dw), n, dw + ".tokens");
  a.data.targets = js::ints(js::field(d, "targets", dw), n, dw + ".targets");
  a.data.seg_start = js::ints(js::field(d, "segStart", dw), n, dw + ".segStart");
  a.data.pos = js::ints(js::field(d, "pos", dw), n, dw + ".pos");
  a.data.order = js::ints(js::field(d, "order", dw), a.steps * a.batch, dw + ".order");
  a.data.step_tokens = js::doubles(js::field(d, "stepTokens", dw), a.steps, dw + ".stepTokens");
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
PhaseSpec read_phase(const Napi::Object& o, size_t index, size_t stages, const std::vector<AdapterSpec>& adapter_specs) {
  const size_t adapters = adapter_specs.size();
  const std::string w = "phases[" + std::to_string(index) + "]";
  PhaseSpec p;
  p.rounds = js::integer(o, "rounds", w);
  LF_CHECK(p.rounds >= 1 && p.rounds <= (int64_t(1) << 31), w << ": rounds " << p.rounds << " out of range");
  Napi::Array ads = js::array(o, "adapters", w);
  std::vector<bool> in_phase(adapters, false);
  for (uint32_t i = 0; i < ads.Length(); i++) {
    LF_CHECK(ads.Get(i).IsNumber(), w << ": adapters must be numbers");
    const int a = ads.Get(i).As<Napi::Number>().Int32Value();
    LF_CHECK(a >= 0 && static_cast<size_t>(a) < adapters && !in_phase[static_cast<size_t>(a)], w << ": adapter " << a << " does not exist or is listed twice");
    in_phase[static_cast<size_t>(a)] = true;
    p.adapters.push_back(a);
  }
  Napi::Array mbs = js::array(o, "microBatches", w);
  for (uint32_t i = 0; i < mbs.Length(); i++) {
    LF_CHECK(mbs.Get(i).IsArray(), w << ": micro-batch " << i << " must be an array of parts");
    Napi::Array parts = mbs.Get(i).As<Napi::Array>();
    LF_CHECK(parts.Length() > 0, w << ": micro-batch " << i << " has no parts");
    std::vector<PhaseSpec::Part> list;
    for (uint32_t j = 0; j < parts.Length(); j++) {
      LF_CHECK(parts.Get(j).IsObject(), w << ": micro-batch " << i << " part " << j << " must be an object");
      Napi::Object po = parts.Get(j).As<Napi::Object>();
      const int64_t adapter = js::integer(po, "adapter", w);
      LF_CHECK(adapter >= 0 && static_cast<size_t>(adapter) < adapters && in_phase[static_cast<size_t>(adapter)], w << ": micro-batch " << i << " names adapter " << adapter << ", not one of the phase's");
      PhaseSpec::Part part{static_cast<int>(adapter), js::integer(po, "step", w), js::integer(po, "index", w), js::integer(po, "sequences", w)};
      const AdapterSpec& as = adapter_specs[static_cast<size_t>(adapter)];
      // build_rows reads sequences index * sequences + i of the step's batch: all must be in it.
      LF_CHECK(part.sequences == as.micro_batch, w << ": micro-batch " << i << " takes " << part.sequences << " sequences of adapter " << as.name << ", whose micro_batch is " << as.micro_batch);
      LF_CHECK(part.index >= 0 && (part.index + 1) * part.sequences <= as.batch, w << ": micro-batch " << i << " is micro-batch " << part.index << " of a step of " << as.batch / as.micro_batch);
      LF_CHECK(part.step >= 0 && part.step < as.steps, w << ": micro-batch " << i << " is in step " << part.step << " of the round");
      list.push_back(part);
    }
    p.micro_batches.push_back(list);
  }
  Napi::Array actions = js::array(o, "actions", w);
  LF_CHECK(actions.Length() == stages, w << ": " << actions.Length() << " action lists for " << stages << " stages");
  for (uint32_t s = 0; s < actions.Length(); s++) {
    auto codes = js::ints(actions.Get(s), -1, w + ".actions");
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

TrainSpec read_spec(const Napi::Object& spec) {
  TrainSpec t;
  t.config = js::llama_config(js::object(spec, "config", "spec"));
  Napi::Array stages = js::array(spec, "stages", "spec");
  LF_CHECK(stages.Length() >= 1 && stages.Length() <= 4096, "spec: " << stages.Length() << " stages");
  int64_t next_block = 0;
  for (uint32_t s = 0; s < stages.Length(); s++) {
    LF_CHECK(stages.Get(s).IsObject(), "stages[" << s << "] must be an object");
    Napi::Object so = stages.Get(s).As<Napi::Object>();
    const std::string w = "stages[" + std::to_string(s) + "]";
    Napi::Array blocks = js::array(so, "blocks", w);
    LF_CHECK(blocks.Length() == 2 && blocks.Get(0u).IsNumber() && blocks.Get(1u).IsNumber(), w << ": blocks must be [first, last)");
    StageSpec ss;
    ss.first_block = blocks.Get(0u).As<Napi::Number>().Int64Value();
    ss.last_block = blocks.Get(1u).As<Napi::Number>().Int64Value();
    ss.embedding = js::boolean(so, "embedding", w);
    ss.head = js::boolean(so, "head", w);
    // Stages tile the model's blocks in order; the embedding is the first's, the head the last's.
    LF_CHECK(ss.first_block == next_block && ss.last_block > ss.first_block && ss.last_block <= 2 * t.config.layers, w << ": blocks [" << ss.first_block << ", " << ss.last_block << ") do not continue from block " << next_block);
    LF_CHECK(ss.embedding == (s == 0) && ss.head == (s + 1 == stages.Length()), w << ": the embedding belongs to the first stage, the head to the last");
    next_block = ss.last_block;
    t.stages.push_back(ss);
  }
  LF_CHECK(next_block == 2 * t.config.layers, "spec: the stages cover blocks [0, " << next_block << ") of " << 2 * t.config.layers);
  ProgramsSpec programs = js::programs(js::object(spec, "programs", "spec"));
  LF_CHECK(programs.stages.size() == t.stages.size(), "programs: " << programs.stages.size() << " stages for " << t.stages.size());
  t.classes = std::move(programs.classes);
  t.class_of = std::move(programs.class_of);
  for (size_t s = 0; s < t.stages.size(); s++) t.stages[s].compiled = std::move(programs.stages[s]);
  Napi::Object weights = js::object(spec, "weights", "spec");
  Napi::Array names = weights.GetPropertyNames();
  for (uint32_t i = 0; i < names.Length(); i++) {
    const std::string name = names.Get(i).As<Napi::String>();
    t.weights[name] = floats(weights.Get(name), -1, "weights." + name);
  }
  Napi::Array adapters = js::array(spec, "adapters", "spec");
  for (uint32_t a = 0; a < adapters.Length(); a++) t.adapters.push_back(read_adapter(adapters.Get(a).As<Napi::Object>(), t.config, a));
  Napi::Array phases = js::array(spec, "phases", "spec");
  for (uint32_t p = 0; p < phases.Length(); p++) t.phases.push_back(read_phase(phases.Get(p).As<Napi::Object>(), p, t.stages.size(), t.adapters));
  LF_CHECK(t.class_of.size() == t.phases.size(), "programs.classOf has " << t.class_of.size() << " phases for " << t.phases.size());
  t.blas_threads = spec.Has("blasThreads") ? static_cast<int>(js::integer(spec, "blasThreads", "spec")) : 1;
  return t;
}

// (layer, module) -> {A, B} as { "LAYER.MODULE": { A: Float32Array, B: Float32Array } }.
Napi::Object sites_to_js(Napi::Env env, const std::map<std::pair<int64_t, int>, std::pair<std::vector<float>, std::vector<float>>>& sites) {
  Napi::Object out = Napi::Object::New(env);
  for (auto& [site, ab] : sites) {
    Napi::Object so = Napi::Object::New(env);
    auto A = Napi::Float32Array::New(env, ab.first.size());
    std::copy(ab.first.begin(), ab.first.end(), A.Data());
    auto B = Napi::Float32Array::New(env, ab.second.size());
    std::copy(ab.second.begin(), ab.second.end(), B.Data());
    so.Set("A", A);
    so.Set("B", B);
    out.Set(std::to_string(site.first) + "." + kModuleNames[site.second], so);
  }
  return out;
}

// A callback that throws must not take the process down from a thread-safe function's call: its
// error is left to the JavaScript side (runPlan records it and fails the run when training ends).
void call_safely(const Napi::Function& fn, const Napi::Object& arg) {
  try {
    fn.Call({arg});
  } catch (const Napi::Error&) {
  }
}

// How the training promise settles. Progress and checkpoint calls are queued for the event
// loop and may still be waiting when training ends; a thread-safe function's finalizer runs only
// after its queue is empty, so the promise settles when both have been finalized, and nothing
// reaches JavaScript after it.
struct Settlement {
  explicit Settlement(Napi::Env env) : deferred(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise::Deferred deferred;
  Napi::Reference<Napi::Value> outcome;  // the result, or the error, once training has ended
  bool failed = false;
  int open = 2;  // thread-safe functions not finalized yet

  void finalized(Napi::Env env) {
    if (--open > 0) return;
    Napi::HandleScope scope(env);
    if (failed) deferred.Reject(outcome.Value());
    else deferred.Resolve(outcome.Value());
    outcome.Reset();
  }
};

class TrainWorker : public Napi::AsyncWorker {
 public:
  TrainWorker(Napi::Env env, std::shared_ptr<Settlement> settlement, std::unique_ptr<Trainer> trainer, Napi::ThreadSafeFunction on_step,
              Napi::ThreadSafeFunction on_checkpoint, int blas_threads)
      : Napi::AsyncWorker(env, "loraflow-train"), settlement_(std::move(settlement)), trainer_(std::move(trainer)),
        on_step_(std::move(on_step)), on_checkpoint_(std::move(on_checkpoint)), blas_threads_(blas_threads) {}

  void Execute() override {
    try {
#ifdef LORAFLOW_HAVE_CBLAS
      openblas_set_num_threads(blas_threads_);
#endif
      trainer_->run([this](const StepEvent& e) {
        auto* copy = new StepEvent(e);
        if (on_step_.BlockingCall(copy, [](Napi::Env env, Napi::Function fn, StepEvent* ev) {
              Napi::Object o = Napi::Object::New(env);
              o.Set("adapter", ev->adapter);
              o.Set("step", static_cast<double>(ev->step));
              o.Set("loss", ev->loss);
              o.Set("lr", ev->lr);
              o.Set("gradNorm", ev->grad_norm);
              o.Set("tokens", ev->tokens);
              delete ev;
              call_safely(fn, o);
            }) != napi_ok) {
          delete copy;
        }
      }, [this](CheckpointEvent&& e) {
        auto* copy = new CheckpointEvent(std::move(e));
        // Queued for the event loop; the promise waits for it (see Settlement).
        if (on_checkpoint_.BlockingCall(copy, [](Napi::Env env, Napi::Function fn, CheckpointEvent* ev) {
              Napi::Object o = Napi::Object::New(env);
              o.Set("adapter", ev->adapter);
              o.Set("step", static_cast<double>(ev->step));
              o.Set("sites", sites_to_js(env, ev->sites));
              delete ev;
              call_safely(fn, o);
            }) != napi_ok) {
          delete copy;
        }
      });
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::Object result = Napi::Object::New(env);
    Napi::Array adapters = Napi::Array::New(env);
    for (size_t a = 0; a < static_cast<size_t>(adapter_count()); a++) {
      adapters.Set(static_cast<uint32_t>(a), sites_to_js(env, trainer_->adapter_weights(static_cast<int>(a))));
    }
    result.Set("adapters", adapters);
    Napi::Array stages = Napi::Array::New(env);
    const auto& times = trainer_->stage_times();
    for (size_t s = 0; s < times.size(); s++) {
      Napi::Object so = Napi::Object::New(env);
      so.Set("busySeconds", times[s].busy_seconds);
      so.Set("waitSeconds", times[s].wait_seconds);
      so.Set("weightBytes", static_cast<double>(times[s].weight_bytes));
      so.Set("adapterBytes", static_cast<double>(times[s].adapter_bytes));
      so.Set("activationBytes", static_cast<double>(times[s].activation_bytes));
      stages.Set(static_cast<uint32_t>(s), so);
    }
    result.Set("stages", stages);
    result.Set("loopAllocations", static_cast<double>(trainer_->loop_allocations()));
    settle(result, false);
  }

  void OnError(const Napi::Error& e) override { settle(Napi::Error::New(Env(), std::string("training failed: ") + e.Message()).Value(), true); }

 private:
  int64_t adapter_count() const { return static_cast<int64_t>(trainer_->adapter_count()); }

  // Records how training ended and lets the thread-safe functions finish their queues; the last
  // finalizer settles the promise.
  void settle(Napi::Value outcome, bool failed) {
    settlement_->outcome = Napi::Persistent(outcome);
    settlement_->failed = failed;
    on_step_.Release();
    on_checkpoint_.Release();
  }

  std::shared_ptr<Settlement> settlement_;
  std::unique_ptr<Trainer> trainer_;
  Napi::ThreadSafeFunction on_step_;
  Napi::ThreadSafeFunction on_checkpoint_;
  int blas_threads_;
};

}  // namespace

Napi::Value Train(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsObject() || !info[1].IsFunction() || !info[2].IsFunction()) {
    throw Napi::TypeError::New(env, "train(spec, onStep, onCheckpoint)");
  }
  std::unique_ptr<Trainer> trainer;
  int blas_threads = 1;
  try {
    TrainSpec spec = read_spec(info[0].As<Napi::Object>());
    blas_threads = spec.blas_threads;
    trainer = std::make_unique<Trainer>(std::move(spec));
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, std::string("train: ") + e.what());
  }
  auto settlement = std::make_shared<Settlement>(env);
  auto finalized = [settlement](Napi::Env e) { settlement->finalized(e); };
  auto on_step = Napi::ThreadSafeFunction::New(env, info[1].As<Napi::Function>(), "loraflow-train-progress", 0, 1, finalized);
  auto on_checkpoint = Napi::ThreadSafeFunction::New(env, info[2].As<Napi::Function>(), "loraflow-train-checkpoint", 0, 1, finalized);
  auto* worker = new TrainWorker(env, settlement, std::move(trainer), std::move(on_step), std::move(on_checkpoint), blas_threads);
  worker->Queue();
  return settlement->deferred.Promise();
}

}  // namespace loraflow
