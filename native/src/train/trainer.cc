// trainer.cc: see trainer.h.
#include "train/trainer.h"

#include <malloc.h>

#include <chrono>
#include <cmath>
#include <exception>
#include <mutex>
#include <sstream>
#include <thread>

#include "cpu/gemm.h"
#include "model/dropout.h"

namespace loraflow {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
}  // namespace

struct Trainer::StageState {
  std::unique_ptr<Arena> weights;   // the stage's frozen base weights
  std::unique_ptr<Arena> adapters;  // LoRA weights, gradients, optimizer moments of every adapter
  std::unique_ptr<Stage<float>> stage;
  std::vector<std::unique_ptr<AdapterOnStage<float>>> on_stage;  // by adapter
  std::vector<std::vector<SiteState>> sites;                      // by adapter
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

Trainer::Trainer(TrainSpec spec)
    : spec_(std::move(spec)),
      rendezvous_(static_cast<int>(spec_.stages.size())),
      transport_(rendezvous_),
      reducer_(rendezvous_, static_cast<int>(spec_.stages.size())) {
  // Activations are allocated and freed per micro-batch; glibc would hand each large buffer back
  // to the kernel (mmap/munmap) and fault its pages in again on the next one. Keep them instead.
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
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
    int64_t total = 0;
    for (auto& [name, n] : names) total += n;
    state->weights = std::make_unique<Arena>("stage " + std::to_string(s) + " weights", total);
    std::map<std::string, const float*> placed;
    for (auto& [name, n] : names) {
      const auto& src = weight(name, n);
      float* dst = state->weights->take(n);
      std::copy(src.begin(), src.end(), dst);
      placed[name] = dst;
    }
    StageWeights<float> w;
    if (placed.count("model.embed_tokens.weight")) w.embed = placed["model.embed_tokens.weight"];
    for (int64_t l = state->l0; l < state->l1; l++) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      LayerWeights<float> lw;
      auto find = [&](const std::string& name) -> const float* {
        auto it = placed.find(name);
        return it == placed.end() ? nullptr : it->second;
      };
      lw.input_norm = find(p + "input_layernorm.weight");
      lw.post_norm = find(p + "post_attention_layernorm.weight");
      const float** slots[kModules] = {&lw.q, &lw.k, &lw.v, &lw.o, &lw.gate, &lw.up, &lw.down};
      for (int m = 0; m < kModules; m++) *slots[m] = find(p + kModuleParents[m] + "." + kModuleNames[m] + ".weight");
      w.layers.push_back(lw);
    }
    if (ss.head) {
      w.final_norm = placed["model.norm.weight"];
      w.lm_head = c.tie_embeddings ? placed["model.embed_tokens.weight"] : placed["lm_head.weight"];
    }
    state->stage = std::make_unique<Stage<float>>(c, ss.first_block, ss.last_block, ss.embedding, ss.head, std::move(w));

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
        auto& slot = on->layers[static_cast<size_t>(site.first - state->l0)][site.second];
        slot.A = st.A;
        slot.B = st.B;
        slot.dA = st.dA;
        slot.dB = st.dB;
        state->sites.back().push_back(st);
      }
      state->stage->set_adapter(static_cast<int>(a), on.get());
      state->on_stage.push_back(std::move(on));
    }
    times_[s].weight_bytes = state->weights->bytes();
    // The stage arenas hold their copies now; the spec's would only double the footprint.
    if (s + 1 == spec_.stages.size()) spec_.weights.clear();
    times_[s].adapter_bytes = state->adapters->bytes();
    stages_.push_back(std::move(state));
  }
}

Trainer::~Trainer() = default;

MicroBatchRows Trainer::build_rows(const PhaseSpec& phase, int mb, const std::vector<int64_t>& steps_done, const std::vector<int64_t>& round_base) const {
  MicroBatchRows rows;
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
  return rows;
}

// Posts this stage's squared gradient norms of an adapter's step, site by site.
void Trainer::contribute_norm(int s, int adapter, int64_t step) {
  const AdapterSpec& as = spec_.adapters[static_cast<size_t>(adapter)];
  std::map<int64_t, double> squares;  // by global site id
  for (const SiteState& site : stages_[static_cast<size_t>(s)]->sites[static_cast<size_t>(adapter)]) {
    double sq = 0;
    for (int64_t i = 0; i < as.rank * site.in; i++) sq += double(site.dA[i]) * site.dA[i];
    for (int64_t i = 0; i < site.out * as.rank; i++) sq += double(site.dB[i]) * site.dB[i];
    squares[site.id] = sq;
  }
  reducer_.contribute(adapter, step, squares);
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
  Stage<float>& stage = *state.stage;
  const int last = static_cast<int>(stages_.size()) - 1;
  const int64_t C = spec_.config.hidden;
  StageTimes& times = times_[static_cast<size_t>(s)];
  std::vector<int64_t> steps_done(spec_.adapters.size(), 0);
  std::vector<double> step_loss(spec_.adapters.size(), 0.0);
  for (size_t p = 0; p < spec_.phases.size(); p++) {
    const PhaseSpec& phase = spec_.phases[p];
    for (int64_t r = 0; r < phase.rounds; r++) {
      const std::vector<int64_t> round_base = steps_done;
      // Backwards still to run on this stage per (adapter, step of the round): when the last one
      // is done, the stage posts its part of the adapter's gradient norm.
      std::map<std::pair<int, int64_t>, int64_t> pending;
      for (const auto& parts : phase.micro_batches) for (const auto& part : parts) pending[{part.adapter, part.step}]++;
      std::map<int, MicroBatchRows> rows;
      std::map<int, std::vector<float>> act_in, act_out, grad_in, grad_out;
      // A micro-batch's key is unique over the run: it tags stashes and messages.
      auto key = [&](int mb) { return (static_cast<int64_t>(p) << 48) | (r << 20) | mb; };
      for (const Action& action : phase.actions[static_cast<size_t>(s)]) {
        const auto started = Clock::now();
        double waited = 0;  // of this action's time, how much was spent blocked on other stages
        switch (action.op) {
          case Op::kF: {
            MicroBatchRows& mr = rows[action.mb] = build_rows(phase, action.mb, steps_done, round_base);
            std::vector<float>& out = act_out[action.mb];
            if (s != last) out.resize(static_cast<size_t>(mr.T * C));
            stage.forward(key(action.mb), mr, s == 0 ? nullptr : act_in.at(action.mb).data(), out.data());
            if (s == last) {
              for (size_t i = 0; i < mr.parts.size(); i++) {
                const AdapterSpec& as = spec_.adapters[static_cast<size_t>(mr.parts[i].adapter)];
                LF_CHECK(std::isfinite(stage.part_losses()[i]), "adapter " << as.name << ": the loss of step " << steps_done[static_cast<size_t>(mr.parts[i].adapter)] + 1
                                                                       << " is not finite (" << stage.part_losses()[i] << "); training stopped");
                step_loss[static_cast<size_t>(mr.parts[i].adapter)] += stage.part_losses()[i];
              }
            }
            act_in.erase(action.mb);
            break;
          }
          case Op::kB: {
            MicroBatchRows& mr = rows.at(action.mb);
            std::vector<float>& out = grad_out[action.mb];
            if (s != 0) out.resize(static_cast<size_t>(mr.T * C));
            stage.backward(key(action.mb), mr, s == last ? nullptr : grad_in.at(action.mb).data(), s == 0 ? nullptr : out.data());
            grad_in.erase(action.mb);
            for (const auto& part : phase.micro_batches[static_cast<size_t>(action.mb)]) {
              if (--pending[{part.adapter, part.step}] == 0) contribute_norm(s, part.adapter, round_base[static_cast<size_t>(part.adapter)] + part.step);
            }
            rows.erase(action.mb);
            break;
          }
          case Op::kSend: {
            auto& from = action.what == Channel::kActivations ? act_out : grad_out;
            auto it = from.find(action.mb);
            LF_CHECK(it != from.end(), "stage " << s << " sends micro-batch " << action.mb << " before computing it");
            transport_.send(s, action.peer, action.what, Message{key(action.mb), std::move(it->second)});
            from.erase(it);
            break;
          }
          case Op::kRecv: {
            Message m = transport_.recv(action.peer, s, action.what, key(action.mb), describe(action, p, r));
            (action.what == Channel::kActivations ? act_in : grad_in)[action.mb] = std::move(m.data);
            waited = seconds_since(started);
            break;
          }
          case Op::kStep: {
            const int a = action.peer;
            const AdapterSpec& as = spec_.adapters[static_cast<size_t>(a)];
            const int64_t k = steps_done[static_cast<size_t>(a)];
            LF_CHECK(k < as.steps, "stage " << s << " at " << describe(action, p, r) << ": adapter " << as.name << " steps past its " << as.steps << " steps");
            const auto reduce_started = Clock::now();
            const double norm = std::sqrt(reducer_.wait(s, a, k, describe(action, p, r)));
            waited = seconds_since(reduce_started);
            LF_CHECK(std::isfinite(norm), "adapter " << as.name << ": the gradient norm of step " << k + 1 << " is not finite (" << norm << "); training stopped");
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
            if (s == last && on_step) on_step(StepEvent{a, k + 1, step_loss[static_cast<size_t>(a)], lr, norm, as.data.step_tokens[static_cast<size_t>(k)]});
            step_loss[static_cast<size_t>(a)] = 0;
            steps_done[static_cast<size_t>(a)]++;
            const int64_t done = k + 1;
            if (on_checkpoint && as.save_every > 0 && done % as.save_every == 0 && done < as.steps) contribute_checkpoint(s, a, done, on_checkpoint);
            break;
          }
        }
        const double took = seconds_since(started);
        times.wait_seconds += waited;
        times.busy_seconds += took - waited;
      }
      LF_CHECK(stage.stashed() == 0, "stage " << s << " ended a round with " << stage.stashed() << " micro-batches in flight");
    }
  }
  rendezvous_.finished(s);
}

void Trainer::run(const std::function<void(const StepEvent&)>& on_step, const std::function<void(CheckpointEvent&&)>& on_checkpoint) {
  std::mutex failure_mu;
  std::exception_ptr failure;
  std::vector<std::thread> threads;
  for (size_t s = 0; s < stages_.size(); s++) {
    threads.emplace_back([&, s] {
      try {
        worker(static_cast<int>(s), on_step, on_checkpoint);
      } catch (const std::exception& e) {
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
