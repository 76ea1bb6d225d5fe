// cpu_stage.cc: see cpu_stage.h.
#include "train/cpu_stage.h"

#include <algorithm>
#include <map>
#include <tuple>

#include "core/arena.h"
#include "cpu/cpu_backend.h"
#include "cpu/gemm.h"
#include "program/executor.h"
#include "train/stage_layout.h"

namespace loraflow {
namespace {

class CpuStage final : public StageEngine {
 public:
  CpuStage(TrainSpec& spec, size_t s, std::shared_ptr<InProcessTransport> transport) : spec_(spec), stage_(static_cast<int>(s)), transport_(std::move(transport)) {
    const LlamaConfig& c = spec.config;
    const StageSpec& ss = spec.stages[s];
    const std::string where = "stage " + std::to_string(s);
    const auto names = stage_weight_tensors(c, ss, s, sizeof(float));
    int64_t total = 0;
    for (auto& [name, n] : names) total += n;
    weights_ = std::make_unique<Arena>(where + " weights", total);
    std::vector<const float*> placed;
    for (auto& [name, n] : names) {
      const auto& src = checked_base_weight(spec, name, n);
      float* dst = weights_->take(n);
      std::copy(src.begin(), src.end(), dst);
      placed.push_back(dst);
    }
    exec_ = std::make_unique<ProgramExecutor<float>>(c, ss.first_block, ss.last_block, spec.classes, ss.compiled.programs, ss.compiled.weights, std::move(placed), backend_);
    check_stage_rounds(spec, ss, s, *exec_);
    activations_ = std::make_unique<Arena>(where + " activations", ss.compiled.round_elems + ss.compiled.work_elems);
    arena_ = activations_->take(ss.compiled.round_elems + ss.compiled.work_elems);
    work_ = arena_ + ss.compiled.round_elems;

    const int64_t adapter_floats = adapter_state_values(spec, ss, s);
    LF_CHECK(adapter_floats == ss.compiled.adapter_elems, where << ": the plan's adapter arena holds " << ss.compiled.adapter_elems << " values, the adapters " << adapter_floats);
    adapters_ = std::make_unique<Arena>(where + " adapters", adapter_floats);
    const auto [l0, l1] = stage_layers(ss);
    for (size_t a = 0; a < spec.adapters.size(); a++) {
      const AdapterSpec& as = spec.adapters[a];
      auto on = std::make_unique<AdapterOnStage<float>>();
      on->rank = as.rank;
      on->scale = as.scale;
      on->dropout = as.dropout;
      on->layers.resize(static_cast<size_t>(l1 - l0));
      sites_.emplace_back();
      for (auto& [site, ab] : as.init) {
        if (!stage_has_site(ss, site)) continue;
        check_site_shapes(spec, as, site, ab.first, ab.second);
        const int64_t na = static_cast<int64_t>(ab.first.size()), nb = static_cast<int64_t>(ab.second.size());
        Site st{site.first * kModules + site.second, na, nb, adapters_->take(na), adapters_->take(nb), adapters_->take(na), adapters_->take(nb), nullptr, nullptr};
        // m1, m2: [na + nb] each, A's moments then B's.
        if (optimizer_moments(as.optimizer) >= 1) st.m1 = adapters_->take(na + nb);
        if (optimizer_moments(as.optimizer) >= 2) st.m2 = adapters_->take(na + nb);
        std::copy(ab.first.begin(), ab.first.end(), st.A);
        std::copy(ab.second.begin(), ab.second.end(), st.B);
        if (const std::vector<float>* m = initial_moments(as, site, na + nb)) {
          if (st.m1) std::copy(m->begin(), m->begin() + (na + nb), st.m1);
          if (st.m2) std::copy(m->begin() + (na + nb), m->end(), st.m2);
        }
        auto& slot = on->layers[static_cast<size_t>(site.first - l0)][static_cast<size_t>(site.second)];
        slot.A = st.A, slot.B = st.B, slot.dA = st.dA, slot.dB = st.dB;
        sites_.back().push_back(st);
      }
      exec_->set_adapter(static_cast<int>(a), on.get());
      on_stage_.push_back(std::move(on));
    }
    size_t most_parts = 0;
    for (const ShapeClassSpec& k : spec.classes) most_parts = std::max(most_parts, k.parts.size());
    exec_->reserve_parts(most_parts);
  }

  void begin() override { gemm_prepare_thread(); }
  bool counts_allocations() const override { return true; }

  void forward(int cls, const RoundBuffers& at, const MicroBatchRows& rows) override { exec_->forward(cls, memory(at), rows); }
  const std::vector<double>& part_losses() const override { return exec_->part_losses(); }
  void backward(int cls, const RoundBuffers& at, const MicroBatchRows& rows) override { exec_->backward(cls, memory(at), rows); }

  void send(int peer, Channel ch, int64_t tag, int cls, int64_t offset) override {
    transport_->send(stage_, peer, ch, tag, arena_ + offset, message(cls));
  }
  void recv(int peer, Channel ch, int64_t tag, int cls, int64_t offset, const Describe& what) override {
    transport_->recv(peer, stage_, ch, tag, arena_ + offset, message(cls), what);
  }

  void squared_norms(int adapter, std::vector<std::pair<int64_t, double>>& terms) override {
    for (const Site& site : sites_[static_cast<size_t>(adapter)]) {
      double sq = 0;
      for (int64_t i = 0; i < site.na; i++) sq += double(site.dA[i]) * site.dA[i];
      for (int64_t i = 0; i < site.nb; i++) sq += double(site.dB[i]) * site.dB[i];
      terms.push_back({site.id, sq});
    }
  }

  void step(int adapter, const StepScalars& s) override {
    float none = 0;
    for (const Site& site : sites_[static_cast<size_t>(adapter)]) {
      // A's moments, then B's, in one buffer each.
      auto moment = [&](float* m, int64_t i) -> float& { return m ? m[i] : none; };
      for (int64_t i = 0; i < site.na; i++) update_parameter(s, site.A[i], site.dA[i], moment(site.m1, i), moment(site.m2, i));
      for (int64_t i = 0; i < site.nb; i++) update_parameter(s, site.B[i], site.dB[i], moment(site.m1, site.na + i), moment(site.m2, site.na + i));
      std::fill(site.dA, site.dA + site.na, 0.0f);
      std::fill(site.dB, site.dB + site.nb, 0.0f);
    }
  }

  void weights(int adapter, SiteWeights& out) override {
    for (const Site& site : sites_[static_cast<size_t>(adapter)]) {
      out[{site.id / kModules, static_cast<int>(site.id % kModules)}] = {std::vector<float>(site.A, site.A + site.na), std::vector<float>(site.B, site.B + site.nb)};
    }
  }

  void moments(int adapter, SiteMoments& out) override {
    for (const Site& site : sites_[static_cast<size_t>(adapter)]) {
      if (!site.m1) continue;
      std::vector<float>& m = out[{site.id / kModules, static_cast<int>(site.id % kModules)}];
      const int64_t n = site.na + site.nb;
      m.assign(site.m1, site.m1 + n);
      if (site.m2) m.insert(m.end(), site.m2, site.m2 + n);
    }
  }

  StageFootprint footprint() const override { return {weights_->bytes(), adapters_->bytes(), activations_->bytes()}; }

 private:
  struct Site {
    int64_t id;  // layer * kModules + module: the same on any stage split
    int64_t na, nb;
    float *A, *B, *dA, *dB, *m1, *m2;
  };

  ProgramMemory<float> memory(const RoundBuffers& at) const { return {arena_, at, work_}; }
  int64_t message(int cls) const { return spec_.classes[static_cast<size_t>(cls)].rows * spec_.config.hidden; }

  const TrainSpec& spec_;
  int stage_;
  std::shared_ptr<InProcessTransport> transport_;
  CpuBackend<float> backend_;
  std::unique_ptr<Arena> weights_, adapters_, activations_;
  float *arena_ = nullptr, *work_ = nullptr;
  std::unique_ptr<ProgramExecutor<float>> exec_;
  std::vector<std::unique_ptr<AdapterOnStage<float>>> on_stage_;  // by adapter
  std::vector<std::vector<Site>> sites_;                           // by adapter
};

}  // namespace

std::vector<std::unique_ptr<StageEngine>> cpu_stage_engines(TrainSpec& spec, Rendezvous& rendezvous, const std::vector<LinkSpec>& links) {
  auto transport = std::make_shared<InProcessTransport>(rendezvous);
  int64_t most_rows = 0;
  for (const ShapeClassSpec& k : spec.classes) most_rows = std::max(most_rows, k.rows);
  // Mailboxes for every link, sized for two rounds of its messages.
  for (const LinkSpec& l : links) transport->reserve(l.from, l.to, l.channel, 2 * l.messages + 1, most_rows * spec.config.hidden);
  std::vector<std::unique_ptr<StageEngine>> stages;
  for (size_t s = 0; s < spec.stages.size(); s++) stages.push_back(std::make_unique<CpuStage>(spec, s, transport));
  // The arenas hold their copies now; the spec's would only double the footprint.
  spec.weights.clear();
  return stages;
}

}  // namespace loraflow
