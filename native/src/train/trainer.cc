// trainer.cc: see trainer.h.
#include "train/trainer.h"

#include <chrono>
#include <cmath>
#include <exception>
#include <mutex>
#include <sstream>
#include <thread>

#include "core/alloc_count.h"
#include "train/cpu_stage.h"
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

// What a stage's worker reuses from round to round.
struct Trainer::StageState {
  std::vector<MicroBatchRows> rows;                    // by micro-batch id, rebuilt in place
  std::vector<std::pair<int64_t, double>> norm_terms;  // a step's squared norms, by site
  std::vector<std::vector<int64_t>> pending;           // [phase][adapter * steps per round + step]: backwards per step
  std::vector<int64_t> pending_now;
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

Trainer::Trainer(TrainSpec spec, const MakeStageEngines& make_stages)
    : spec_(std::move(spec)), rendezvous_(static_cast<int>(spec_.stages.size())), reducer_(rendezvous_, static_cast<int>(spec_.stages.size())) {
  LF_CHECK(!spec_.stages.empty(), "the plan has no stages");
  // Every link a round uses, with the most messages a round sends on it.
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
  std::vector<LinkSpec> links;
  for (auto& [link, n] : sends) links.push_back({std::get<0>(link), std::get<1>(link), static_cast<Channel>(std::get<2>(link)), n});
  for (const LinkSpec& l : links) {
    LF_CHECK(l.from >= 0 && l.to >= 0 && static_cast<size_t>(l.from) < spec_.stages.size() && static_cast<size_t>(l.to) < spec_.stages.size() && l.from != l.to,
             "the plan links stage " << l.from << " to stage " << l.to << " of " << spec_.stages.size());
  }
  engines_ = make_stages ? make_stages(spec_, rendezvous_, links) : cpu_stage_engines(spec_, rendezvous_, links);
  LF_CHECK(engines_.size() == spec_.stages.size(), engines_.size() << " stage engines for " << spec_.stages.size() << " stages");
  times_.resize(spec_.stages.size());
  live_ = std::make_unique<std::atomic<double>[]>(2 * spec_.stages.size());
  // What the loop reuses: row tables at the largest class's size, norm terms, backward counts.
  int64_t most_rows = 0;
  size_t most_parts = 0;
  for (const ShapeClassSpec& k : spec_.classes) most_rows = std::max(most_rows, k.rows), most_parts = std::max(most_parts, k.parts.size());
  size_t most_mbs = 0;
  for (const PhaseSpec& phase : spec_.phases) most_mbs = std::max(most_mbs, phase.micro_batches.size());
  for (size_t s = 0; s < spec_.stages.size(); s++) {
    const StageFootprint f = engines_[s]->footprint();
    times_[s].weight_bytes = f.weight_bytes;
    times_[s].adapter_bytes = f.adapter_bytes;
    times_[s].activation_bytes = f.activation_bytes;
    // The traced rounds' actions, reserved now: the loop allocates nothing.
    if (!spec_.phases.empty() && spec_.start_round == 0) {
      const int64_t traced = std::min(spec_.trace_rounds, spec_.phases[0].rounds);
      times_[s].trace.reserve(static_cast<size_t>(traced) * spec_.phases[0].actions[s].size());
    }
    auto state = std::make_unique<StageState>();
    state->rows.resize(most_mbs);
    for (MicroBatchRows& r : state->rows) r.reserve(most_rows, most_parts);
    state->norm_terms.reserve(static_cast<size_t>(spec_.config.layers * kModules));
    for (const PhaseSpec& phase : spec_.phases) {
      const int64_t spr = steps_per_round(phase);
      std::vector<int64_t> counts(spec_.adapters.size() * static_cast<size_t>(spr), 0);
      for (const auto& parts : phase.micro_batches) for (const auto& part : parts) counts[static_cast<size_t>(part.adapter * spr + part.step)]++;
      state->pending_now.reserve(counts.size());
      state->pending.push_back(std::move(counts));
    }
    stages_.push_back(std::move(state));
  }
  reducer_.reserve(static_cast<int>(spec_.adapters.size()), spec_.config.layers * kModules);

  // Resuming: each adapter has done exactly the steps the rounds before start_round give it.
  furthest_round_ = spec_.start_round;  // every stage starts there
  const int64_t total = total_rounds();
  LF_CHECK(spec_.start_round >= 0 && spec_.start_round <= total, "the run resumes after round " << spec_.start_round << " of " << total);
  std::vector<int64_t> expected(spec_.adapters.size(), 0);
  int64_t left = spec_.start_round;
  for (const PhaseSpec& phase : spec_.phases) {
    const int64_t r = std::min(left, phase.rounds);
    for (int a : phase.adapters) expected[static_cast<size_t>(a)] += r * steps_per_round(phase);
    left -= r;
  }
  for (size_t a = 0; a < spec_.adapters.size(); a++) {
    const AdapterSpec& as = spec_.adapters[a];
    LF_CHECK(as.steps_done == expected[a], "adapter " << as.name << " resumes after " << as.steps_done << " steps, but the " << spec_.start_round << " rounds before give it " << expected[a]);
  }
}

int64_t Trainer::total_rounds() const {
  int64_t total = 0;
  for (const PhaseSpec& phase : spec_.phases) total += phase.rounds;
  return total;
}

bool Trainer::stops_after(int64_t g) {
  std::lock_guard<std::mutex> lock(stop_mu_);
  // A stop asked for since the last check ends the furthest round any stage has started.
  if (stop_at_ < 0 && stop_flag_ != nullptr && __atomic_load_n(stop_flag_, __ATOMIC_RELAXED) != 0) stop_at_ = furthest_round_;
  if (stop_at_ == g) {
    stopped_after_ = g + 1;
    return true;
  }
  // In the same step as the check: a stop requested after it ends the next round, which this
  // stage is then known to run.
  furthest_round_ = std::max(furthest_round_, g + 1);
  return false;
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
  StageState& state = *stages_[static_cast<size_t>(s)];
  state.norm_terms.clear();  // by global site id
  engines_[static_cast<size_t>(s)]->squared_norms(adapter, state.norm_terms);
  reducer_.contribute(adapter, step, state.norm_terms.data(), state.norm_terms.size());
}

struct Trainer::Callbacks {
  const std::function<void(const StepEvent&)>& step;
  const std::function<void(CheckpointEvent&&)>& checkpoint;
  const std::function<void(Snapshot&&)>& snapshot;
};

// Each stage adds its sites; the last to do so hands the whole adapter to on_checkpoint.
void Trainer::contribute_checkpoint(int s, int adapter, int64_t step, bool save, bool evaluate, const std::function<void(CheckpointEvent&&)>& on_checkpoint) {
  alloc::Pause pause;
  SiteWeights weights;
  SiteMoments moments;
  engines_[static_cast<size_t>(s)]->weights(adapter, weights);
  engines_[static_cast<size_t>(s)]->moments(adapter, moments);
  CheckpointEvent done;
  {
    std::lock_guard<std::mutex> lock(checkpoint_mu_);
    auto& [arrived, event] = checkpoints_[{adapter, step}];
    event.adapter = adapter;
    event.step = step;
    event.save = save;
    event.evaluate = evaluate;
    event.sites.insert(weights.begin(), weights.end());
    event.moments.insert(moments.begin(), moments.end());
    if (++arrived < static_cast<int>(stages_.size())) return;
    done = std::move(event);
    checkpoints_.erase({adapter, step});
  }
  on_checkpoint(std::move(done));
}

// Each stage adds its sites of every adapter after the round; the last to do so hands the
// whole run's state to on_snapshot.
void Trainer::contribute_snapshot(int s, int64_t rounds_done, bool stopped, const std::vector<int64_t>& steps, const std::function<void(Snapshot&&)>& on_snapshot) {
  alloc::Pause pause;
  const size_t n = spec_.adapters.size();
  StageEngine& engine = *engines_[static_cast<size_t>(s)];
  std::vector<SiteWeights> weights(n);
  std::vector<SiteMoments> moments(n);
  for (size_t a = 0; a < n; a++) {
    engine.weights(static_cast<int>(a), weights[a]);
    engine.moments(static_cast<int>(a), moments[a]);
  }
  Snapshot done;
  {
    std::lock_guard<std::mutex> lock(snapshot_mu_);
    auto& [arrived, snap] = snapshots_[rounds_done];
    if (arrived == 0) {
      snap.rounds_done = rounds_done;
      snap.stopped = stopped;
      snap.steps = steps;
      snap.weights.resize(n);
      snap.moments.resize(n);
    }
    for (size_t a = 0; a < n; a++) {
      snap.weights[a].insert(weights[a].begin(), weights[a].end());
      snap.moments[a].insert(moments[a].begin(), moments[a].end());
    }
    if (++arrived < static_cast<int>(stages_.size())) return;
    done = std::move(snap);
    snapshots_.erase(rounds_done);
  }
  on_snapshot(std::move(done));
}

void Trainer::worker(int s, const Callbacks& on) {
  StageState& state = *stages_[static_cast<size_t>(s)];
  StageEngine& engine = *engines_[static_cast<size_t>(s)];
  const StageSpec& ss = spec_.stages[static_cast<size_t>(s)];
  const int last = static_cast<int>(stages_.size()) - 1;
  StageTimes& times = times_[static_cast<size_t>(s)];
  const size_t n_adapters = spec_.adapters.size();
  std::vector<int64_t> steps_done(n_adapters, 0);
  for (size_t a = 0; a < n_adapters; a++) steps_done[a] = spec_.adapters[a].steps_done;
  std::vector<int64_t> round_base(n_adapters, 0);
  std::vector<double> step_loss(n_adapters, 0.0);
  const int64_t total = total_rounds();
  engine.begin();
  // From here to the end of the last round a CPU worker allocates nothing (progress reports and
  // snapshots aside, which pause the count).
  alloc::count_this_thread(engine.counts_allocations());
  int64_t g = 0;  // the round's index over all phases
  bool stopped = false;
  for (size_t p = 0; p < spec_.phases.size() && !stopped; p++) {
    const PhaseSpec& phase = spec_.phases[p];
    const int64_t spr = steps_per_round(phase);
    // Rounds a resumed run has done already.
    const int64_t skip = std::clamp<int64_t>(spec_.start_round - g, 0, phase.rounds);
    g += skip;
    for (int64_t r = skip; r < phase.rounds && !stopped; r++, g++) {
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
        switch (action.op) {
          case Op::kF: {
            MicroBatchRows& mr = state.rows[static_cast<size_t>(action.mb)];
            build_rows(mr, phase, action.mb, steps_done, round_base);
            engine.forward(cls, buffers, mr);
            if (s == last) {
              for (size_t i = 0; i < mr.parts.size(); i++) {
                const int a = mr.parts[i].adapter;
                const double loss = engine.part_losses()[i];
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
            engine.backward(cls, buffers, mr);
            for (const auto& part : phase.micro_batches[static_cast<size_t>(action.mb)]) {
              if (--state.pending_now[static_cast<size_t>(part.adapter * spr + part.step)] == 0) contribute_norm(s, part.adapter, round_base[static_cast<size_t>(part.adapter)] + part.step);
            }
            break;
          }
          case Op::kSend: {
            const int64_t from = action.what == Channel::kActivations ? buffers.act_out : buffers.grad_out;
            LF_CHECK(from >= 0, "stage " << s << " at " << what() << " has no buffer to send");
            engine.send(action.peer, action.what, key(action.mb), cls, from);
            break;
          }
          case Op::kRecv: {
            const int64_t into = action.what == Channel::kActivations ? buffers.act_in : buffers.grad_in;
            LF_CHECK(into >= 0, "stage " << s << " at " << what() << " has no buffer to receive into");
            engine.recv(action.peer, action.what, key(action.mb), cls, into, what);
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
            engine.step(a, step_scalars(as.optimizer, lr, k + 1, coef));
            if (s == last && on.step) {
              alloc::Pause pause;
              StepEvent event{a, k + 1, step_loss[static_cast<size_t>(a)], lr, norm, as.data.step_tokens[static_cast<size_t>(k)], {}, {}};
              for (size_t t = 0; t < stages_.size(); t++) {
                event.busy.push_back(live_[2 * t].load(std::memory_order_relaxed));
                event.wait.push_back(live_[2 * t + 1].load(std::memory_order_relaxed));
              }
              on.step(event);
            }
            step_loss[static_cast<size_t>(a)] = 0;
            steps_done[static_cast<size_t>(a)]++;
            const int64_t done = k + 1;
            const bool save = as.save_every > 0 && (done % as.save_every == 0 || done == as.steps);
            const bool evaluate = as.eval_every > 0 && (done % as.eval_every == 0 || done == as.steps);
            if (on.checkpoint && (save || evaluate)) contribute_checkpoint(s, a, done, save, evaluate, on.checkpoint);
            break;
          }
        }
        const double took = seconds_since(started);
        times.wait_seconds += waited;
        times.busy_seconds += took - waited;
        live_[2 * static_cast<size_t>(s)].store(times.busy_seconds, std::memory_order_relaxed);
        live_[2 * static_cast<size_t>(s) + 1].store(times.wait_seconds, std::memory_order_relaxed);
        if (p == 0 && r < spec_.trace_rounds && times.trace.size() < times.trace.capacity()) {
          const double at = std::chrono::duration<double>(started - run_started_).count();
          // STEP's wait comes first (the norms), a RECV's is the whole of it.
          times.trace.push_back({action, r, at, at + waited, at + took});
        }
      }
      // The round is done on this stage: its state is the run's after round g, saved when the
      // round took an adapter past a multiple of its save_every (not after the last round: the
      // run's end writes the adapters themselves).
      bool due = false;
      for (size_t a = 0; a < n_adapters; a++) {
        const int64_t every = spec_.adapters[a].save_every;
        due = due || (every > 0 && steps_done[a] / every > round_base[a] / every);
      }
      const bool last_round = g + 1 == total;
      stopped = !last_round && stops_after(g);
      if (on.snapshot && ((due && !last_round) || stopped)) contribute_snapshot(s, g + 1, stopped, steps_done, on.snapshot);
    }
  }
  alloc::count_this_thread(false);
  engine.end();
  rendezvous_.finished(s);
}

void Trainer::run(const std::function<void(const StepEvent&)>& on_step, const std::function<void(CheckpointEvent&&)>& on_checkpoint, const std::function<void(Snapshot&&)>& on_snapshot) {
  const Callbacks on{on_step, on_checkpoint, on_snapshot};
  run_started_ = Clock::now();
  std::mutex failure_mu;
  std::exception_ptr failure;
  const int64_t allocations_before = alloc::counted();
  std::vector<std::thread> threads;
  for (size_t s = 0; s < stages_.size(); s++) {
    threads.emplace_back([&, s] {
      try {
        worker(static_cast<int>(s), on);
      } catch (const std::exception& e) {
        alloc::count_this_thread(false);
        {
          std::lock_guard<std::mutex> lock(failure_mu);
          if (!failure) failure = std::current_exception();
        }
        rendezvous_.abort(std::string("stopped: stage ") + std::to_string(s) + " failed (" + e.what() + ")");
        for (auto& engine : engines_) engine->abort();
      }
    });
  }
  for (auto& t : threads) t.join();
  if (failure) std::rethrow_exception(failure);
  bool counted = alloc::available();
  for (const auto& engine : engines_) counted = counted && engine->counts_allocations();
  loop_allocations_ = counted ? alloc::counted() - allocations_before : -1;
}

SiteWeights Trainer::adapter_weights(int adapter) const {
  LF_CHECK(adapter >= 0 && static_cast<size_t>(adapter) < spec_.adapters.size(), "adapter " << adapter << " out of range");
  SiteWeights out;
  for (const auto& engine : engines_) engine->weights(adapter, out);
  return out;
}

}  // namespace loraflow
