// trainer.cc: see trainer.h.
#include "train/trainer.h"

#include <chrono>
#include <cmath>
#include <exception>
#include <mutex>
#include <sstream>
#include <thread>

#include "core/alloc_count.h"
#include "cpu/gemm.h"
#include "model/dropout.h"

namespace loraflow {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

const RoundBuffers kNoBuffers{};

// Optimizer steps each adapter takes in one round of the phase.
int64_t steps_per_round(const PhaseSpec& phase) {
  int64_t n = 1;
  for (const auto& parts : phase.micro_batches) for (const auto& part : parts) n = std::max(n, part.step + 1);
  return n;
}
}  // namespace

struct Trainer::StageState {
  std::unique_ptr<Arena> weights;      // the stage's frozen base weights, as its weight table lays them out
  std::unique_ptr<Arena> adapters;     // LoRA weights, gradients, optimizer moments of every adapter
  std::unique_ptr<Arena> activations;  // [round region | workspace], as the programs lay them out
  std::unique_ptr<ProgramExecutor<float>> exec;
  std::vector<std::unique_ptr<AdapterOnStage<float>>> on_stage;  // by adapter
  std::vector<std::vector<SiteState>> sites;                      // by adapter
  std::vector<MicroBatchRows> rows;                               // by micro-batch id, rebuilt in place
  std::vector<std::pair<int64_t, double>> norm_terms;             // a step's squared norms, by site
  std::vector<std::vector<int64_t>> pending;                      // [phase][adapter * steps per round + step]: backwards per step
  std::vector<int64_t> pending_now;
  int64_t l0 = 0, l1 = 0;
};

// "RECV act mb3 from s0 (phase 0, round 2)": an action as the plan writes it, for messages.
std::string describe(const Action& a, size_t phase, int64_t round) {
  std::ostringstream o;
  switch (a.op) {
    case Op::kF: o << "F mb" << a.mb; break;
    case Op::kB: o << "B mb" << a.mb; break;
    case Op::kSend: o << "SEND " << (a.what == Channel::kActivations ? "act" : "grad") << " mb" << a.mb << " to s" << a.peer; break;
    case Op::kRecv: o << "RECV " << (a.what == Channel::kActivations ? "act" : "grad") << " mb" << a.mb << " from s" << a.peer; break;
    case Op::kStep: o << "STEP a" << a.peer; break;
  }
  o << " (phase " << phase << ", round " << round << ")";
  return o.str();
}

struct ActionAt {
  const Action* action;
  size_t phase;
  int64_t round;
};
std::string describe_at(const void* p) {
  const ActionAt* a = static_cast<const ActionAt*>(p);
  return describe(*a->action, a->phase, a->round);
}

Trainer::Trainer(TrainSpec spec)
    : spec_(std::move(spec)),
      rendezvous_(static_cast<int>(spec_.stages.size())),
      transport_(rendezvous_),
      reducer_(rendezvous_, static_cast<int>(spec_.stages.size())) {
  const LlamaConfig& c = spec_.config;
  LF_CHECK(!spec_.stages.empty(), "the plan has no stages");
  auto weight = [&](const std::string& name, int64_t n) -> const std::vector<float>& {
    auto it = spec_.weights.find(name);
    LF_CHECK(it != spec_.weights.end(), "base weight `" << name << "` is missing");
    LF_CHECK(static_cast<int64_t>(it->second.size()) == n, "base weight `" << name << "` has " << it->second.size() << " values, expected " << n);
    // One NaN here would make every loss NaN: refuse the weights, naming where.
    for (size_t i = 0; i < it->second.size(); i++) {
      LF_CHECK(std::isfinite(it->second[i]), "base weight `" << name << "` holds a value that is not finite (" << it->second[i] << ") at index " << i);
    }
    return it->second;
  };
  times_.resize(spec_.stages.size());
  for (size_t s = 0; s < spec_.stages.size(); s++) {
    const StageSpec& ss = spec_.stages[s];
    auto state = std::make_unique<StageState>();
    state->l0 = ss.first_block / 2;
    state->l1 = ss.last_block == ss.first_block ? state->l0 : (ss.last_block + 1) / 2;
    // Every tensor the stage reads, in the order they are laid out in its weights arena.
    std::vector<std::pair<std::string, int64_t>> names;
    if (ss.embedding || (ss.head && c.tie_embeddings)) names.push_back({"model.embed_tokens.weight", c.vocab * c.hidden});
    // Only the halves of layers whose blocks the stage runs: a layer split between two stages
    // has its attention weights on one and its MLP weights on the other.
    for (int64_t l = state->l0; l < state->l1; l++) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      const bool attention = 2 * l >= ss.first_block, mlp = 2 * l + 1 < ss.last_block;
      if (attention) names.push_back({p + "input_layernorm.weight", c.hidden});
      if (mlp) names.push_back({p + "post_attention_layernorm.weight", c.hidden});
      for (int m = 0; m < kModules; m++) {
        if (module_block(l, m) < ss.first_block || module_block(l, m) >= ss.last_block) continue;
        names.push_back({p + kModuleParents[m] + "." + kModuleNames[m] + ".weight", module_in(c, m) * module_out(c, m)});
      }
    }
    if (ss.head) {
      names.push_back({"model.norm.weight", c.hidden});
      if (!c.tie_embeddings) names.push_back({"lm_head.weight", c.vocab * c.hidden});
    }
    // The plan's weight table must be this layout: the same tensors, in order, end to end.
    const std::string where = "stage " + std::to_string(s);
    LF_CHECK(ss.compiled.weights.size() == names.size(), where << ": the plan's weight table has " << ss.compiled.weights.size() << " tensors, the stage reads " << names.size());
    int64_t total = 0;
    for (size_t i = 0; i < names.size(); i++) {
      const WeightSlotSpec& slot = ss.compiled.weights[i];
      LF_CHECK(slot.name == names[i].first && slot.numel() == names[i].second && slot.offset == total,
               where << ": weight table entry " << i << " is " << slot.name << ", expected " << names[i].first << " at " << total);
      total += names[i].second;
    }
    state->weights = std::make_unique<Arena>(where + " weights", total);
    std::vector<const float*> placed;
    for (auto& [name, n] : names) {
      const auto& src = weight(name, n);
      float* dst = state->weights->take(n);
      std::copy(src.begin(), src.end(), dst);
      placed.push_back(dst);
    }
    state->exec = std::make_unique<ProgramExecutor<float>>(c, ss.first_block, ss.last_block, spec_.classes, ss.compiled.programs, ss.compiled.weights, std::move(placed), backend_);
    // The activation arena: every round's buffers inside its region, the largest program's workspace after it.
    LF_CHECK(ss.compiled.work_elems >= state->exec->max_work(), where << ": a workspace of " << ss.compiled.work_elems << " elements for programs that need " << state->exec->max_work());
    LF_CHECK(ss.compiled.rounds.size() == spec_.phases.size(), where << ": round layouts for " << ss.compiled.rounds.size() << " of " << spec_.phases.size() << " phases");
    for (size_t p = 0; p < ss.compiled.rounds.size(); p++) {
      LF_CHECK(ss.compiled.rounds[p].size() == spec_.phases[p].micro_batches.size() && spec_.class_of[p].size() == ss.compiled.rounds[p].size(), where << ": phase " << p << " lays out " << ss.compiled.rounds[p].size() << " micro-batches");
      for (size_t mb = 0; mb < ss.compiled.rounds[p].size(); mb++) {
        state->exec->check_buffers(spec_.class_of[p][mb], ss.compiled.rounds[p][mb], ss.compiled.round_elems, where + ": phase " + std::to_string(p) + "'s micro-batch " + std::to_string(mb));
      }
    }
    state->activations = std::make_unique<Arena>(where + " activations", ss.compiled.round_elems + ss.compiled.work_elems);

    // Adapter state: per site A, B, dA, dB and the optimizer's moment buffers (AdamW two, SGD
    // with momentum one, plain SGD none), the same count the plan's memory model uses.
    auto moments = [](const OptimizerConfig& o) { return o.kind == OptimizerConfig::kAdamW ? 2 : o.momentum != 0 ? 1 : 0; };
    int64_t adapter_floats = 0;
    for (const AdapterSpec& a : spec_.adapters) {
      for (auto& [site, ab] : a.init) {
        const int64_t block = module_block(site.first, site.second);
        const int64_t n = static_cast<int64_t>(ab.first.size()) + static_cast<int64_t>(ab.second.size());
        if (block >= ss.first_block && block < ss.last_block) adapter_floats += (2 + moments(a.optimizer)) * n;
      }
    }
    LF_CHECK(adapter_floats == ss.compiled.adapter_elems, "stage " << s << ": the plan's adapter arena holds " << ss.compiled.adapter_elems << " values, the adapters " << adapter_floats);
    state->adapters = std::make_unique<Arena>("stage " + std::to_string(s) + " adapters", adapter_floats);
    for (size_t a = 0; a < spec_.adapters.size(); a++) {
      const AdapterSpec& as = spec_.adapters[a];
      auto on = std::make_unique<AdapterOnStage<float>>();
      on->rank = as.rank;
      on->scale = as.scale;
      on->dropout = as.dropout;
      on->layers.resize(static_cast<size_t>(state->l1 - state->l0));
      state->sites.emplace_back();
      for (auto& [site, ab] : as.init) {
        const int64_t block = module_block(site.first, site.second);
        if (block < ss.first_block || block >= ss.last_block) continue;
        const int64_t in = module_in(c, site.second), out = module_out(c, site.second);
        LF_CHECK(static_cast<int64_t>(ab.first.size()) == as.rank * in && static_cast<int64_t>(ab.second.size()) == out * as.rank,
                 "adapter " << as.name << ": layer " << site.first << " " << kModuleNames[site.second] << " has the wrong LoRA shapes");
        const int64_t na = as.rank * in, nb = out * as.rank;
        SiteState st{site.first * kModules + site.second, in, out, state->adapters->take(na), state->adapters->take(nb), state->adapters->take(na), state->adapters->take(nb), nullptr, nullptr};
        // m1, m2: [na + nb] each, A's moments then B's.
        if (moments(as.optimizer) >= 1) st.m1 = state->adapters->take(na + nb);
        if (moments(as.optimizer) >= 2) st.m2 = state->adapters->take(na + nb);
        std::copy(ab.first.begin(), ab.first.end(), st.A);
        std::copy(ab.second.begin(), ab.second.end(), st.B);
        auto& slot = on->layers[static_cast<size_t>(site.first - state->l0)][static_cast<size_t>(site.second)];
        slot.A = st.A;
        slot.B = st.B;
        slot.dA = st.dA;
        slot.dB = st.dB;
        state->sites.back().push_back(st);
      }
      state->exec->set_adapter(static_cast<int>(a), on.get());
      state->on_stage.push_back(std::move(on));
    }
    times_[s].weight_bytes = state->weights->bytes();
    // The stage arenas hold their copies now; the spec's would only double the footprint.
    if (s + 1 == spec_.stages.size()) spec_.weights.clear();
    times_[s].adapter_bytes = state->adapters->bytes();
    times_[s].activation_bytes = state->activations->bytes();

    // What the loop reuses: row tables at the largest class's size, norm terms, backward counts.
    int64_t most_rows = 0;
    size_t most_parts = 0;
    for (const ShapeClassSpec& k : spec_.classes) most_rows = std::max(most_rows, k.rows), most_parts = std::max(most_parts, k.parts.size());
    size_t most_mbs = 0;
    for (const PhaseSpec& phase : spec_.phases) most_mbs = std::max(most_mbs, phase.micro_batches.size());
    state->rows.resize(most_mbs);
    for (MicroBatchRows& r : state->rows) r.reserve(most_rows, most_parts);
    state->exec->reserve_parts(most_parts);
    size_t most_sites = 0;
    for (const auto& list : state->sites) most_sites = std::max(most_sites, list.size());
    state->norm_terms.reserve(most_sites);
    for (const PhaseSpec& phase : spec_.phases) {
      const int64_t spr = steps_per_round(phase);
      std::vector<int64_t> counts(spec_.adapters.size() * static_cast<size_t>(spr), 0);
      for (const auto& parts : phase.micro_batches) for (const auto& part : parts) counts[static_cast<size_t>(part.adapter * spr + part.step)]++;
      state->pending_now.reserve(counts.size());
      state->pending.push_back(std::move(counts));
    }
    stages_.push_back(std::move(state));
  }
  // Mailboxes for every link a round uses, sized for two rounds of its messages.
  int64_t most_rows = 0;
  for (const ShapeClassSpec& k : spec_.classes) most_rows = std::max(most_rows, k.rows);
  std::map<std::tuple<int, int, int>, size_t> sends;
  for (const PhaseSpec& phase : spec_.phases) {
    std::map<std::tuple<int, int, int>, size_t> here;
    for (size_t st = 0; st < phase.actions.size(); st++) {
      for (const Action& a : phase.actions[st]) {
        if (a.op == Op::kSend) here[{static_cast<int>(st), a.peer, static_cast<int>(a.what)}]++;
        if (a.op == Op::kRecv) here[{a.peer, static_cast<int>(st), static_cast<int>(a.what)}] += 0;
      }
    }
    for (auto& [link, n] : here) sends[link] = std::max(sends[link], n);
  }
  for (auto& [link, n] : sends) transport_.reserve(std::get<0>(link), std::get<1>(link), static_cast<Channel>(std::get<2>(link)), 2 * n + 1, most_rows * c.hidden);
  reducer_.reserve(static_cast<int>(spec_.adapters.size()), c.layers * kModules);
}

Trainer::~Trainer() = default;

void Trainer::build_rows(MicroBatchRows& rows, const PhaseSpec& phase, int mb, const std::vector<int64_t>& steps_done, const std::vector<int64_t>& round_base) const {
  rows.clear();
  for (const PhaseSpec::Part& part : phase.micro_batches.at(static_cast<size_t>(mb))) {
    const AdapterSpec& a = spec_.adapters[static_cast<size_t>(part.adapter)];
    const AdapterData& d = a.data;
    const int64_t step = steps_done[static_cast<size_t>(part.adapter)];
    LF_CHECK(step < a.steps, "adapter " << a.name << " scheduled past its " << a.steps << " steps");
    LF_CHECK(step == round_base[static_cast<size_t>(part.adapter)] + part.step,
             "adapter " << a.name << ": a micro-batch of step " << part.step << " of the round runs after " << step - round_base[static_cast<size_t>(part.adapter)] << " steps");
    AdapterRows ar{part.adapter, rows.T, part.sequences * d.seq_len, 1.0 / std::max(1.0, d.step_tokens[static_cast<size_t>(step)])};
    for (int64_t i = 0; i < part.sequences; i++) {
      const int64_t in_step = part.index * part.sequences + i;  // which sequence of the step
      const int64_t seq = d.order[static_cast<size_t>(step * a.batch + in_step)];
      const size_t base = static_cast<size_t>(seq * d.seq_len);
      for (int64_t t = 0; t < d.seq_len; t++) {
        rows.tokens.push_back(d.tokens[base + t]);
        rows.targets.push_back(d.targets[base + t]);
        rows.seg_start.push_back(static_cast<int32_t>(rows.T + d.seg_start[base + t]));
        rows.pos.push_back(d.pos[base + t]);
        rows.row_keys.push_back(dropout_row_key(a.seed, static_cast<uint64_t>(step), static_cast<uint64_t>(in_step), static_cast<uint64_t>(t)));
      }
      rows.T += d.seq_len;
    }
    rows.parts.push_back(ar);
  }
}

// Posts this stage's squared gradient norms of an adapter's step, site by site.
void Trainer::contribute_norm(int s, int adapter, int64_t step) {
  const AdapterSpec& as = spec_.adapters[static_cast<size_t>(adapter)];
  StageState& state = *stages_[static_cast<size_t>(s)];
  state.norm_terms.clear();  // by global site id
  for (const SiteState& site : state.sites[static_cast<size_t>(adapter)]) {
    double sq = 0;
    for (int64_t i = 0; i < as.rank * site.in; i++) sq += double(site.dA[i]) * site.dA[i];
    for (int64_t i = 0; i < site.out * as.rank; i++) sq += double(site.dB[i]) * site.dB[i];
    state.norm_terms.push_back({site.id, sq});
  }
  reducer_.contribute(adapter, step, state.norm_terms.data(), state.norm_terms.size());
}

// Each stage adds its sites; the last to do so hands the whole adapter to on_checkpoint.
void Trainer::contribute_checkpoint(int s, int adapter, int64_t step, const std::function<void(CheckpointEvent&&)>& on_checkpoint) {
  const AdapterSpec& as = spec_.adapters[static_cast<size_t>(adapter)];
  std::map<std::pair<int64_t, int>, std::pair<std::vector<float>, std::vector<float>>> mine;
  for (const SiteState& site : stages_[static_cast<size_t>(s)]->sites[static_cast<size_t>(adapter)]) {
    const int64_t na = as.rank * site.in, nb = site.out * as.rank;
    mine[{site.id / kModules, static_cast<int>(site.id % kModules)}] = {std::vector<float>(site.A, site.A + na), std::vector<float>(site.B, site.B + nb)};
  }
  CheckpointEvent done;
  {
    std::lock_guard<std::mutex> lock(checkpoint_mu_);
    auto& [arrived, event] = checkpoints_[{adapter, step}];
    event.adapter = adapter;
    event.step = step;
    event.sites.insert(mine.begin(), mine.end());
    if (++arrived < static_cast<int>(stages_.size())) return;
    done = std::move(event);
    checkpoints_.erase({adapter, step});
  }
  on_checkpoint(std::move(done));
}

void Trainer::worker(int s, const std::function<void(const StepEvent&)>& on_step, const std::function<void(CheckpointEvent&&)>& on_checkpoint) {
  StageState& state = *stages_[static_cast<size_t>(s)];
  ProgramExecutor<float>& exec = *state.exec;
  const StageSpec& ss = spec_.stages[static_cast<size_t>(s)];
  const int last = static_cast<int>(stages_.size()) - 1;
  const int64_t C = spec_.config.hidden;
  StageTimes& times = times_[static_cast<size_t>(s)];
  std::vector<int64_t> steps_done(spec_.adapters.size(), 0);
  std::vector<int64_t> round_base(spec_.adapters.size(), 0);
  std::vector<double> step_loss(spec_.adapters.size(), 0.0);
  float* arena = state.activations->take(ss.compiled.round_elems + ss.compiled.work_elems);
  float* const work = arena + ss.compiled.round_elems;
  gemm_prepare_thread();
  // From here to the end of the last round the worker allocates nothing (progress reports and
  // checkpoints aside, which pause the count).
  alloc::count_this_thread(true);
  for (size_t p = 0; p < spec_.phases.size(); p++) {
    const PhaseSpec& phase = spec_.phases[p];
    const int64_t spr = steps_per_round(phase);
    for (int64_t r = 0; r < phase.rounds; r++) {
      std::copy(steps_done.begin(), steps_done.end(), round_base.begin());
      // Backwards still to run on this stage per (adapter, step of the round): when the last one
      // is done, the stage posts its part of the adapter's gradient norm.
      state.pending_now.assign(state.pending[p].begin(), state.pending[p].end());
      // A micro-batch's key is unique over the run: it tags messages.
      auto key = [&](int mb) { return (static_cast<int64_t>(p) << 48) | (r << 20) | mb; };
      for (const Action& action : phase.actions[static_cast<size_t>(s)]) {
        const auto started = Clock::now();
        double waited = 0;  // of this action's time, how much was spent blocked on other stages
        const ActionAt at{&action, p, r};
        const Describe what{describe_at, &at};
        // A STEP names no micro-batch: it has no class and no buffers.
        const bool step = action.op == Op::kStep;
        const int cls = step ? 0 : spec_.class_of[p][static_cast<size_t>(action.mb)];
        const RoundBuffers& buffers = step ? kNoBuffers : ss.compiled.rounds[p][static_cast<size_t>(action.mb)];
        const ProgramMemory<float> memory{arena, buffers, work};
        const int64_t message = step ? 0 : spec_.classes[static_cast<size_t>(cls)].rows * C;
        switch (action.op) {
          case Op::kF: {
            MicroBatchRows& mr = state.rows[static_cast<size_t>(action.mb)];
            build_rows(mr, phase, action.mb, steps_done, round_base);
            exec.forward(cls, memory, mr);
            if (s == last) {
              for (size_t i = 0; i < mr.parts.size(); i++) {
                const int a = mr.parts[i].adapter;
                const double loss = exec.part_losses()[i];
                if (!std::isfinite(loss)) {
                  alloc::Pause pause;
                  LF_CHECK(false, "adapter " << spec_.adapters[static_cast<size_t>(a)].name << ": the loss of step " << steps_done[static_cast<size_t>(a)] + 1 << " is not finite (" << loss << "); training stopped");
                }
                step_loss[static_cast<size_t>(a)] += loss;
              }
            }
            break;
          }
          case Op::kB: {
            const MicroBatchRows& mr = state.rows[static_cast<size_t>(action.mb)];
            exec.backward(cls, memory, mr);
            for (const auto& part : phase.micro_batches[static_cast<size_t>(action.mb)]) {
              if (--state.pending_now[static_cast<size_t>(part.adapter * spr + part.step)] == 0) contribute_norm(s, part.adapter, round_base[static_cast<size_t>(part.adapter)] + part.step);
            }
            break;
          }
          case Op::kSend: {
            const int64_t from = action.what == Channel::kActivations ? buffers.act_out : buffers.grad_out;
            LF_CHECK(from >= 0, "stage " << s << " at " << what() << " has no buffer to send");
            transport_.send(s, action.peer, action.what, key(action.mb), arena + from, message);
            break;
          }
          case Op::kRecv: {
            const int64_t into = action.what == Channel::kActivations ? buffers.act_in : buffers.grad_in;
            LF_CHECK(into >= 0, "stage " << s << " at " << what() << " has no buffer to receive into");
            transport_.recv(action.peer, s, action.what, key(action.mb), arena + into, message, what);
            waited = seconds_since(started);
            break;
          }
          case Op::kStep: {
            const int a = action.peer;
            const AdapterSpec& as = spec_.adapters[static_cast<size_t>(a)];
            const int64_t k = steps_done[static_cast<size_t>(a)];
            LF_CHECK(k < as.steps, "stage " << s << " at " << what() << ": adapter " << as.name << " steps past its " << as.steps << " steps");
            const auto reduce_started = Clock::now();
            const double norm = std::sqrt(reducer_.wait(s, a, k, what));
            waited = seconds_since(reduce_started);
            if (!std::isfinite(norm)) {
              alloc::Pause pause;
              LF_CHECK(false, "adapter " << as.name << ": the gradient norm of step " << k + 1 << " is not finite (" << norm << "); training stopped");
            }
            const double coef = clip_coefficient(as.optimizer.clip, norm);
            const double lr = learning_rate(as.optimizer, k, as.schedule_steps);
            for (const SiteState& site : state.sites[static_cast<size_t>(a)]) {
              const int64_t na = as.rank * site.in, nb = site.out * as.rank;
              const auto past_a = [na](float* m) { return m == nullptr ? nullptr : m + na; };
              optimizer_update(as.optimizer, site.A, site.dA, site.m1, site.m2, na, lr, k + 1, coef);
              optimizer_update(as.optimizer, site.B, site.dB, past_a(site.m1), past_a(site.m2), nb, lr, k + 1, coef);
              std::fill(site.dA, site.dA + na, 0.0f);
              std::fill(site.dB, site.dB + nb, 0.0f);
            }
            if (s == last && on_step) {
              alloc::Pause pause;
              on_step(StepEvent{a, k + 1, step_loss[static_cast<size_t>(a)], lr, norm, as.data.step_tokens[static_cast<size_t>(k)]});
            }
            step_loss[static_cast<size_t>(a)] = 0;
            steps_done[static_cast<size_t>(a)]++;
            const int64_t done = k + 1;
            if (on_checkpoint && as.save_every > 0 && done % as.save_every == 0 && done < as.steps) {
              alloc::Pause pause;
              contribute_checkpoint(s, a, done, on_checkpoint);
            }
            break;
          }
        }
        const double took = seconds_since(started);
        times.wait_seconds += waited;
        times.busy_seconds += took - waited;
      }
    }
  }
  alloc::count_this_thread(false);
  rendezvous_.finished(s);
}

void Trainer::run(const std::function<void(const StepEvent&)>& on_step, const std::function<void(CheckpointEvent&&)>& on_checkpoint) {
  std::mutex failure_mu;
  std::exception_ptr failure;
  const int64_t allocations_before = alloc::counted();
  std::vector<std::thread> threads;
  for (size_t s = 0; s < stages_.size(); s++) {
    threads.emplace_back([&, s] {
      try {
        worker(static_cast<int>(s), on_step, on_checkpoint);
      } catch (const std::exception& e) {
        alloc::count_this_thread(false);
        {
          std::lock_guard<std::mutex> lock(failure_mu);
          if (!failure) failure = std::current_exception();
        }
        rendezvous_.abort(std::string("stopped: stage ") + std::to_string(s) + " failed (" + e.what() + ")");
      }
    });
  }
  for (auto& t : threads) t.join();
  if (failure) std::rethrow_exception(failure);
  loop_allocations_ = alloc::available() ? alloc::counted() - allocations_before : -1;
}

std::map<std::pair<int64_t, int>, std::pair<std::vector<float>, std::vector<float>>> Trainer::adapter_weights(int adapter) const {
  std::map<std::pair<int64_t, int>, std::pair<std::vector<float>, std::vector<float>>> out;
  const AdapterSpec& as = spec_.adapters.at(static_cast<size_t>(adapter));
  for (const auto& state : stages_) {
    const auto& on = *state->on_stage[static_cast<size_t>(adapter)];
    for (int64_t l = state->l0; l < state->l1; l++) {
      for (int m = 0; m < kModules; m++) {
        const auto& site = on.layers[static_cast<size_t>(l - state->l0)][m];
        if (!site.A) continue;
        const int64_t na = as.rank * module_in(spec_.config, m), nb = module_out(spec_.config, m) * as.rank;
        out[{l, m}] = {std::vector<float>(site.A, site.A + na), std::vector<float>(site.B, site.B + nb)};
      }
    }
  }
  return out;
}

}  // namespace loraflow
