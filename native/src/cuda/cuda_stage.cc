// cuda_stage.cc: see cuda_stage.h.
#include "cuda/cuda_stage.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "core/check.h"
#include "cuda/bf16.h"
#include "cuda/cuda_backend.h"
#include "cuda/cuda_device.h"
#include "cuda/device_links.h"
#include "cuda/emu_device.h"
#include "cuda/kernels/optimizer.h"
#include "program/executor.h"
#include "train/stage_layout.h"

namespace loraflow::cuda {
namespace {

// What the stages of one run share: the devices, then the links between stages (which go first).
struct DeviceSet {
  std::map<int, std::unique_ptr<Device>> devices;  // by ordinal
  std::unique_ptr<DeviceLinks> links;
};

class CudaStage final : public StageEngine {
 public:
  CudaStage(std::shared_ptr<DeviceSet> set, TrainSpec& spec, size_t s, Device& device) : set_(std::move(set)), spec_(spec), stage_(static_cast<int>(s)), device_(device) {
    const LlamaConfig& c = spec.config;
    const StageSpec& ss = spec.stages[s];
    const std::string where = "stage " + std::to_string(s);
    LF_CHECK(!ss.compiled.programs.empty(), where << " has no programs");
    const DType act = ss.compiled.programs[0].activations;
    int64_t most_rows = 0;
    for (const ShapeClassSpec& k : spec.classes) most_rows = std::max(most_rows, k.rows);
    backend_ = std::make_unique<CudaBackend>(device, c, act, most_rows);
    Stream& stream = backend_->cuda_stream();
    try {
      // Base weights: one arena, each tensor at its table offset (bytes), in its own dtype.
      const auto names = stage_weight_tensors(c, ss, s, 1);
      weight_bytes_ = std::max<int64_t>(ss.compiled.weight_elems, 1);
      weights_ = backend_->allocate(weight_bytes_);
      std::vector<const std::byte*> placed;
      std::vector<unsigned char> staging;
      for (size_t i = 0; i < names.size(); i++) {
        const WeightSlotSpec& slot = ss.compiled.weights[i];
        const std::vector<float>& src = checked_base_weight(spec, names[i].first, names[i].second);
        const int64_t bytes = slot.numel() * dtype_bytes(slot.dtype);
        LF_CHECK(slot.offset + bytes <= weight_bytes_, where << ": weight " << slot.name << " runs past the weights arena of " << weight_bytes_ << " bytes");
        staging.resize(static_cast<size_t>(bytes));
        if (slot.dtype == DType::kBF16) {
          auto* b = reinterpret_cast<bf16*>(staging.data());
          for (size_t k = 0; k < src.size(); k++) b[k] = from_float<bf16>(src[k]);
        } else {
          std::memcpy(staging.data(), src.data(), static_cast<size_t>(bytes));
        }
        device.copy(weights_ + slot.offset, staging.data(), static_cast<size_t>(bytes), stream);
        device.synchronize(stream);  // before the staging is rewritten
        placed.push_back(weights_ + slot.offset);
      }
      exec_ = std::make_unique<ProgramExecutor<std::byte>>(c, ss.first_block, ss.last_block, spec.classes, ss.compiled.programs, ss.compiled.weights, std::move(placed), *backend_);
      check_stage_rounds(spec, ss, s, *exec_);
      activation_bytes_ = ss.compiled.round_elems + ss.compiled.work_elems;
      arena_ = backend_->allocate(activation_bytes_);
      work_ = arena_ + ss.compiled.round_elems;

      // Adapter state, fp32: the plan's arena, carved as the CPU engine carves its own.
      const int64_t floats = adapter_state_values(spec, ss, s);
      LF_CHECK(floats * 4 == ss.compiled.adapter_elems, where << ": the plan's adapter arena holds " << ss.compiled.adapter_elems << " bytes, the adapters " << floats * 4);
      adapter_bytes_ = std::max<int64_t>(floats * 4, 4);
      adapters_ = backend_->allocate(adapter_bytes_);
      auto* next = reinterpret_cast<float*>(adapters_);
      auto take = [&](int64_t n) { float* p = next; next += n; return p; };
      const auto [l0, l1] = stage_layers(ss);
      std::vector<float> AB;
      for (size_t a = 0; a < spec.adapters.size(); a++) {
        const AdapterSpec& as = spec.adapters[a];
        auto on = std::make_unique<AdapterOnStage<std::byte>>();
        on->rank = as.rank;
        on->scale = as.scale;
        on->dropout = as.dropout;
        on->layers.resize(static_cast<size_t>(l1 - l0));
        Adapter mine;
        std::vector<OptimizerSite> table;
        for (auto& [site, ab] : as.init) {
          if (!stage_has_site(ss, site)) continue;
          check_site_shapes(spec, as, site, ab.first, ab.second);
          const int64_t na = static_cast<int64_t>(ab.first.size()), nb = static_cast<int64_t>(ab.second.size());
          Site st{site.first * kModules + site.second, na, nb, take(na + nb), take(na + nb), nullptr, nullptr};
          if (optimizer_moments(as.optimizer) >= 1) st.m = take(na + nb);
          if (optimizer_moments(as.optimizer) >= 2) st.v = take(na + nb);
          AB.assign(ab.first.begin(), ab.first.end());
          AB.insert(AB.end(), ab.second.begin(), ab.second.end());
          device.copy(st.p, AB.data(), AB.size() * 4, stream);
          if (const std::vector<float>* m = initial_moments(as, site, na + nb)) {
            if (st.m) device.copy(st.m, m->data(), static_cast<size_t>(na + nb) * 4, stream);
            if (st.v) device.copy(st.v, m->data() + (na + nb), static_cast<size_t>(na + nb) * 4, stream);
          }
          device.synchronize(stream);
          auto& slot = on->layers[static_cast<size_t>(site.first - l0)][static_cast<size_t>(site.second)];
          slot.A = reinterpret_cast<std::byte*>(st.p);
          slot.B = reinterpret_cast<std::byte*>(st.p + na);
          slot.dA = reinterpret_cast<std::byte*>(st.g);
          slot.dB = reinterpret_cast<std::byte*>(st.g + na);
          table.push_back({st.p, st.g, st.m, st.v, na + nb});
          mine.longest = std::max(mine.longest, na + nb);
          mine.sites.push_back(st);
        }
        // The optimizer's and the norms' site table, and the norms, on the device.
        if (!table.empty()) {
          const size_t bytes = table.size() * sizeof(OptimizerSite) + table.size() * sizeof(double);
          mine.table = backend_->allocate(static_cast<int64_t>(bytes));
          device.copy(mine.table, table.data(), table.size() * sizeof(OptimizerSite), stream);
          device.synchronize(stream);
          mine.norms = reinterpret_cast<double*>(mine.table + table.size() * sizeof(OptimizerSite));
          mine.norms_host.assign(table.size(), 0.0);
        }
        exec_->set_adapter(static_cast<int>(a), on.get());
        on_stage_.push_back(std::move(on));
        adapters_on_.push_back(std::move(mine));
      }
    } catch (...) {
      release();
      throw;
    }
  }

  ~CudaStage() override { release(); }

  void begin() override { device_.make_current(); }

  void forward(int cls, const RoundBuffers& at, const MicroBatchRows& rows) override { exec_->forward(cls, memory(at), rows); }
  const std::vector<double>& part_losses() const override { return exec_->part_losses(); }
  void backward(int cls, const RoundBuffers& at, const MicroBatchRows& rows) override { exec_->backward(cls, memory(at), rows); }

  void send(int peer, Channel ch, int64_t tag, int cls, int64_t offset) override {
    set_->links->send(stage_, peer, ch, tag, arena_ + offset, message(cls), backend_->cuda_stream());
  }
  void recv(int peer, Channel ch, int64_t tag, int cls, int64_t offset, const Describe& what) override {
    set_->links->recv(peer, stage_, ch, tag, arena_ + offset, message(cls), backend_->cuda_stream(), what);
  }

  void squared_norms(int adapter, std::vector<std::pair<int64_t, double>>& terms) override {
    Adapter& a = adapters_on_[static_cast<size_t>(adapter)];
    if (a.sites.empty()) return;
    Stream& stream = backend_->cuda_stream();
    launch<SquaredNormKernel>(device_, stream, {sites_of(a), static_cast<int>(a.sites.size()), a.norms}, "squared_norm");
    device_.copy(a.norms_host.data(), a.norms, a.norms_host.size() * sizeof(double), stream);
    device_.synchronize(stream);
    for (size_t i = 0; i < a.sites.size(); i++) terms.push_back({a.sites[i].id, a.norms_host[i]});
  }

  void step(int adapter, const StepScalars& scalars) override {
    Adapter& a = adapters_on_[static_cast<size_t>(adapter)];
    if (a.sites.empty()) return;
    launch<OptimizerKernel>(device_, backend_->cuda_stream(), {sites_of(a), static_cast<int>(a.sites.size()), scalars, a.longest}, "optimizer");
  }

  void weights(int adapter, SiteWeights& out) override {
    Stream& stream = backend_->cuda_stream();
    for (const Site& site : adapters_on_[static_cast<size_t>(adapter)].sites) {
      auto& [A, B] = out[{site.id / kModules, static_cast<int>(site.id % kModules)}];
      A.resize(static_cast<size_t>(site.na));
      B.resize(static_cast<size_t>(site.nb));
      device_.copy(A.data(), site.p, A.size() * 4, stream);
      device_.copy(B.data(), site.p + site.na, B.size() * 4, stream);
      device_.synchronize(stream);
    }
  }

  void moments(int adapter, SiteMoments& out) override {
    Stream& stream = backend_->cuda_stream();
    for (const Site& site : adapters_on_[static_cast<size_t>(adapter)].sites) {
      if (!site.m) continue;
      const int64_t n = site.na + site.nb;
      std::vector<float>& m = out[{site.id / kModules, static_cast<int>(site.id % kModules)}];
      m.resize(static_cast<size_t>(site.v ? 2 * n : n));
      device_.copy(m.data(), site.m, static_cast<size_t>(n) * 4, stream);
      if (site.v) device_.copy(m.data() + n, site.v, static_cast<size_t>(n) * 4, stream);
      device_.synchronize(stream);
    }
  }

  StageFootprint footprint() const override { return {weight_bytes_, adapter_bytes_, activation_bytes_}; }

  void abort() override { set_->links->abort(); }

 private:
  struct Site {
    int64_t id;  // layer * kModules + module
    int64_t na, nb;
    float* p;  // [na + nb]: A then B
    float* g;  // [na + nb]: dA then dB
    float* m;  // [na + nb] or null
    float* v;  // [na + nb] or null
  };
  struct Adapter {
    std::vector<Site> sites;
    std::byte* table = nullptr;  // [sites] OptimizerSite, then [sites] double: the norms
    double* norms = nullptr;
    std::vector<double> norms_host;
    int64_t longest = 0;
  };

  static const OptimizerSite* sites_of(const Adapter& a) { return reinterpret_cast<const OptimizerSite*>(a.table); }
  ProgramMemory<std::byte> memory(const RoundBuffers& at) const { return {arena_, at, work_}; }
  size_t message(int cls) const {
    return static_cast<size_t>(exec_->program(cls).activation_units(spec_.classes[static_cast<size_t>(cls)].rows * spec_.config.hidden));
  }

  void release() {
    if (!backend_) return;
    try {
      backend_->synchronize(nullptr);
    } catch (...) {
    }
    for (std::byte* p : {weights_, arena_, adapters_}) {
      try {
        if (p) backend_->release(p);
      } catch (...) {
      }
    }
    for (Adapter& a : adapters_on_) {
      try {
        if (a.table) backend_->release(a.table);
      } catch (...) {
      }
      a.table = nullptr;
    }
    weights_ = arena_ = adapters_ = nullptr;
  }

  std::shared_ptr<DeviceSet> set_;  // first: it goes last, after everything on its devices
  const TrainSpec& spec_;
  int stage_;
  Device& device_;
  std::unique_ptr<CudaBackend> backend_;
  std::byte *weights_ = nullptr, *arena_ = nullptr, *work_ = nullptr, *adapters_ = nullptr;
  int64_t weight_bytes_ = 0, adapter_bytes_ = 0, activation_bytes_ = 0;
  std::unique_ptr<ProgramExecutor<std::byte>> exec_;
  std::vector<std::unique_ptr<AdapterOnStage<std::byte>>> on_stage_;  // by adapter
  std::vector<Adapter> adapters_on_;                                  // by adapter
};

}  // namespace

MakeStageEngines cuda_stage_engines(CudaTrainOptions options) {
  return [options](TrainSpec& spec, Rendezvous& rendezvous, const std::vector<LinkSpec>& links) {
    const size_t S = spec.stages.size();
    std::vector<int> ordinal = options.device_of_stage.empty() ? std::vector<int>(S, 0) : options.device_of_stage;
    LF_CHECK(ordinal.size() == S, ordinal.size() << " devices given for " << S << " stages");
    auto set = std::make_shared<DeviceSet>();
    for (int o : ordinal) {
      LF_CHECK(o >= 0, "device " << o << " for a stage");
      if (set->devices.count(o)) continue;
      if (options.emulated) set->devices[o] = std::make_unique<EmuDevice>(EmuDevice::Options{o});
      else set->devices[o] = open_cuda_device(o);
    }
    std::vector<Device*> device_of_stage;
    for (int o : ordinal) device_of_stage.push_back(set->devices.at(o).get());
    LF_CHECK(!spec.stages[0].compiled.programs.empty(), "stage 0 has no programs");
    const DType act = spec.stages[0].compiled.programs[0].activations;
    int64_t most_rows = 0;
    for (const ShapeClassSpec& k : spec.classes) most_rows = std::max(most_rows, k.rows);
    const size_t max_bytes = static_cast<size_t>(most_rows * spec.config.hidden * dtype_bytes(act));
    set->links = std::make_unique<DeviceLinks>(rendezvous, device_of_stage, links, max_bytes, act);
    std::vector<std::unique_ptr<StageEngine>> stages;
    for (size_t s = 0; s < S; s++) stages.push_back(std::make_unique<CudaStage>(set, spec, s, *device_of_stage[s]));
    spec.weights.clear();
    return stages;
  };
}

}  // namespace loraflow::cuda
