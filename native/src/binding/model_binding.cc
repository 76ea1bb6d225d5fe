// model_binding.cc: `modelGrad(spec)`, a whole model cut into stages run one micro-batch at a
// time on the calling thread: the summed loss and (unless `backward: false`, which `eval` uses)
// every adapter's LoRA gradients, in double or float. The stages run their compiled programs
// (spec.programs, which runtime/native.ts lowers for the spec) on the CPU backend, the same
// executor training uses, or (backend "cuda-emulated" or "cuda") on the CUDA backend in the
// programs' own dtype. The tests difference the loss numerically against these gradients end
// to end, compare stage cuts and fusions, and hold the CUDA backend to the CPU's results.
#include <napi.h>

#include <algorithm>
#include <array>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "binding/napi_value.h"
#include "core/check.h"
#include "cpu/cpu_backend.h"
#include "cuda/bf16.h"
#include "cuda/cuda_backend.h"
#include "cuda/cuda_device.h"
#include "cuda/emu_device.h"
#include "program/executor.h"
#include "spec/program_read.h"
#include "spec/read.h"

namespace loraflow {
namespace {


// What modelGrad is given, read and checked once, whichever backend runs it.
struct GradInput {
  LlamaConfig config;
  std::map<std::string, std::vector<double>> weights;  // by Hugging Face name
  struct Adapter {
    int64_t rank = 0;
    double scale = 1, dropout = 0;
    std::map<std::pair<int64_t, int>, std::array<std::vector<double>, 2>> sites;  // A, B
  };
  std::vector<Adapter> adapters;
  std::vector<std::pair<int64_t, int64_t>> ranges;  // each stage's blocks
  std::vector<MicroBatchRows> batches;
  bool backward = true;

  const std::vector<double>& weight(const std::string& name, int64_t expected) const {
    auto it = weights.find(name);
    LF_CHECK(it != weights.end(), "weights: `" << name << "` is missing");
    LF_CHECK(static_cast<int64_t>(it->second.size()) == expected, "weights: `" << name << "` has " << it->second.size() << " elements, expected " << expected);
    return it->second;
  }
};

GradInput read_input(spec::Value& spec) {
  GradInput in;
  in.config = spec::llama_config(spec::object(spec, "config", "spec"));
  const LlamaConfig& c = in.config;

  spec::Value& weights = spec::object(spec, "weights", "spec");
  for (size_t i = 0; i < weights.members().size(); i++) {
    const std::string name = weights.members()[i].first;
    in.weights[name] = spec::reals(*weights.find(name), -1, "weights." + name);
  }

  // Adapters: per site "LAYER.MODULE" -> { A, B }.
  spec::Value& adapters = spec::array(spec, "adapters", "spec");
  in.adapters.resize(adapters.size());
  for (size_t a = 0; a < adapters.size(); a++) {
    const std::string where = "adapters[" + std::to_string(a) + "]";
    spec::Value& ao = spec::object_at(adapters, a, where);
    GradInput::Adapter& info = in.adapters[a];
    info.rank = spec::integer(ao, "rank", where);
    info.scale = spec::number(ao, "scale", where);
    info.dropout = spec::number(ao, "dropout", where);
    LF_CHECK(info.rank > 0 && info.dropout >= 0 && info.dropout < 1, where << ": rank must be positive, dropout in [0, 1)");
    spec::Value& sites = spec::object(ao, "sites", where);
    for (size_t k = 0; k < sites.members().size(); k++) {
      const std::string key = sites.members()[k].first;
      const auto [layer, module] = spec::lora_site(key, c, where);
      spec::Value& so = *sites.find(key);
      const int64_t fan_in = module_in(c, module), fan_out = module_out(c, module);
      auto& arrays = info.sites[{layer, module}];
      arrays[0] = spec::reals(spec::field(so, "A", where), info.rank * fan_in, where + "." + key + ".A");
      arrays[1] = spec::reals(spec::field(so, "B", where), fan_out * info.rank, where + "." + key + ".B");
    }
  }

  const spec::Value& stage_ranges = spec::array(spec, "stages", "spec");
  LF_CHECK(stage_ranges.size() > 0, "spec: `stages` is empty");
  int64_t next_block = 0;
  for (size_t s = 0; s < stage_ranges.size(); s++) {
    const spec::Value& r = stage_ranges.at(s);
    LF_CHECK(r.is_array() && r.size() == 2 && r.at(0).is_number() && r.at(1).is_number(), "stages[" << s << "] must be [first, last)");
    const int64_t b0 = static_cast<int64_t>(r.at(0).as_number()), b1 = static_cast<int64_t>(r.at(1).as_number());
    LF_CHECK(b0 == next_block && b1 > b0, "stages[" << s << "] does not continue from block " << next_block);
    next_block = b1;
    in.ranges.push_back({b0, b1});
  }
  LF_CHECK(next_block == 2 * c.layers, "spec: the stages cover blocks [0, " << next_block << ") of " << 2 * c.layers);
  // Every weight a stage reads must be given, with its shape.
  const auto& ranges = in.ranges;
  for (size_t s = 0; s < ranges.size(); s++) {
    const bool first = s == 0, last = s + 1 == ranges.size();
    if (first || (last && c.tie_embeddings)) in.weight("model.embed_tokens.weight", c.vocab * c.hidden);
    if (last) {
      in.weight("model.norm.weight", c.hidden);
      if (!c.tie_embeddings) in.weight("lm_head.weight", c.vocab * c.hidden);
    }
    for (int64_t l = ranges[s].first / 2; l < (ranges[s].second + 1) / 2; l++) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      if (2 * l >= ranges[s].first) in.weight(p + "input_layernorm.weight", c.hidden);
      if (2 * l + 1 < ranges[s].second) in.weight(p + "post_attention_layernorm.weight", c.hidden);
      for (int mm = 0; mm < kModules; mm++) {
        const int64_t b = module_block(l, mm);
        if (b >= ranges[s].first && b < ranges[s].second) in.weight(p + kModuleParents[mm] + "." + kModuleNames[mm] + ".weight", module_in(c, mm) * module_out(c, mm));
      }
    }
  }

  spec::Value& mbs = spec::array(spec, "microBatches", "spec");
  in.backward = !spec.has("backward") || spec::boolean(spec, "backward", "spec");
  for (size_t i = 0; i < mbs.size(); i++) {
    const std::string where = "microBatches[" + std::to_string(i) + "]";
    spec::Value& mo = spec::object_at(mbs, i, where);
    MicroBatchRows rows;
    rows.tokens = spec::ints(spec::field(mo, "tokens", where), -1, where + ".tokens");
    rows.T = static_cast<int64_t>(rows.tokens.size());
    rows.targets = spec::ints(spec::field(mo, "targets", where), rows.T, where + ".targets");
    rows.seg_start = spec::ints(spec::field(mo, "segStart", where), rows.T, where + ".segStart");
    rows.pos = spec::ints(spec::field(mo, "pos", where), rows.T, where + ".pos");
    rows.row_keys = spec::keys(spec::field(mo, "rowKeys", where), rows.T, where + ".rowKeys");
    for (int64_t t = 0; t < rows.T; t++) {
      LF_CHECK(rows.tokens[t] >= 0 && rows.tokens[t] < c.vocab, where << ": token " << rows.tokens[t] << " at row " << t << " is outside the vocabulary");
      LF_CHECK(rows.targets[t] == -100 || (rows.targets[t] >= 0 && rows.targets[t] < c.vocab), where << ": target at row " << t << " is outside the vocabulary");
      LF_CHECK(rows.seg_start[t] >= 0 && rows.seg_start[t] <= t, where << ": segStart[" << t << "] must be in [0, " << t << "]");
    }
    const spec::Value& parts = spec::array(mo, "parts", where);
    int64_t row = 0;
    for (size_t p = 0; p < parts.size(); p++) {
      const spec::Value& po = spec::object_at(parts, p, where + ".parts[" + std::to_string(p) + "]");
      AdapterRows part;
      part.adapter = static_cast<int>(spec::integer(po, "adapter", where));
      part.row0 = spec::integer(po, "row0", where);
      part.rows = spec::integer(po, "rows", where);
      part.grad_scale = spec::number(po, "gradScale", where);
      LF_CHECK(part.adapter >= 0 && part.adapter < static_cast<int>(in.adapters.size()), where << ": part " << p << " names adapter " << part.adapter);
      LF_CHECK(part.row0 == row && part.rows > 0, where << ": parts must cover the rows in order");
      row += part.rows;
      rows.parts.push_back(part);
    }
    LF_CHECK(row == rows.T, where << ": parts cover " << row << " of " << rows.T << " rows");
    in.batches.push_back(std::move(rows));
  }
  return in;
}

// The spec's programs for these stages and micro-batches (micro-batch i is phase 0's i).
ProgramsSpec read_programs(const spec::Value& spec, const GradInput& in, const spec::Units& units) {
  ProgramsSpec programs = spec::programs(spec::object(spec, "programs", "spec"), units);
  LF_CHECK(programs.stages.size() == in.ranges.size() && programs.class_of.size() == 1 && programs.class_of[0].size() == in.batches.size(),
           "spec.programs does not describe these stages and micro-batches");
  for (size_t i = 0; i < in.batches.size(); i++) {
    // Stages hand each other [T, C] rows before a program checks them: T must be the class's.
    LF_CHECK(programs.classes[static_cast<size_t>(programs.class_of[0][i])].rows == in.batches[i].T, "spec.programs: micro-batch " << i << " is not its class's rows");
  }
  return programs;
}

// One stage's executor with every adapter's sites bound (A, B, dA, dB pointers by site, in
// whatever memory the backend reads).
template <typename S>
std::unique_ptr<ProgramExecutor<S>> stage_executor(const GradInput& in, ProgramsSpec& programs, size_t s, std::vector<const S*> weights, Backend<S>& backend,
                                                   const std::function<std::array<S*, 4>(size_t adapter, std::pair<int64_t, int> site)>& site_memory,
                                                   std::vector<std::unique_ptr<AdapterOnStage<S>>>& on_stage) {
  StageProgramsSpec& sp = programs.stages[s];
  auto exec = std::make_unique<ProgramExecutor<S>>(in.config, in.ranges[s].first, in.ranges[s].second, programs.classes, sp.programs, sp.weights, std::move(weights), backend);
  LF_CHECK(sp.work_elems >= exec->max_work() && sp.rounds.size() == 1 && sp.rounds[0].size() == in.batches.size(), "spec.programs: stage " << s << "'s arena does not hold its programs");
  for (size_t i = 0; i < in.batches.size(); i++) {
    exec->check_buffers(programs.class_of[0][i], sp.rounds[0][i], sp.round_elems, "spec.programs: stage " + std::to_string(s) + "'s micro-batch " + std::to_string(i));
  }
  const int64_t l0 = in.ranges[s].first / 2, l1 = (in.ranges[s].second + 1) / 2;
  for (size_t a = 0; a < in.adapters.size(); a++) {
    auto on = std::make_unique<AdapterOnStage<S>>();
    on->rank = in.adapters[a].rank;
    on->scale = in.adapters[a].scale;
    on->dropout = in.adapters[a].dropout;
    on->layers.resize(static_cast<size_t>(l1 - l0));
    for (int64_t l = l0; l < l1; l++) {
      for (int mm = 0; mm < kModules; mm++) {
        if (in.adapters[a].sites.count({l, mm}) == 0) continue;
        const std::array<S*, 4> m = site_memory(a, {l, mm});
        auto& site = on->layers[static_cast<size_t>(l - l0)][static_cast<size_t>(mm)];
        site.A = m[0], site.B = m[1], site.dA = m[2], site.dB = m[3];
      }
    }
    exec->set_adapter(static_cast<int>(a), on.get());
    on_stage.push_back(std::move(on));
  }
  return exec;
}

// Each micro-batch through the stages and back, one at a time; `hand_on(s, from, to, bytes of
// from's buffer)` copies a stage's message buffer into the next's. Returns the summed loss.
template <typename S, typename HandOn>
double run_batches(const GradInput& in, const ProgramsSpec& programs, std::vector<std::unique_ptr<ProgramExecutor<S>>>& stages, const std::vector<S*>& arenas, HandOn&& hand_on) {
  double loss = 0;
  const size_t last = stages.size() - 1;
  for (size_t i = 0; i < in.batches.size(); i++) {
    const MicroBatchRows& rows = in.batches[i];
    const int cls = programs.class_of[0][i];
    const int64_t n = programs.stages[0].programs[static_cast<size_t>(cls)].activation_units(rows.T * in.config.hidden);
    auto memory = [&](size_t s) { return ProgramMemory<S>{arenas[s], programs.stages[s].rounds[0][i], arenas[s] + programs.stages[s].round_elems}; };
    for (size_t s = 0; s <= last; s++) {
      if (s > 0) {
        const ProgramMemory<S> from = memory(s - 1), to = memory(s);
        LF_CHECK(from.at.act_out >= 0 && to.at.act_in >= 0, "spec.programs: no activation buffers between stages " << s - 1 << " and " << s);
        hand_on(to.arena + to.at.act_in, from.arena + from.at.act_out, n);
      }
      const double l = stages[s]->forward(cls, memory(s), rows);
      if (s == last) loss += l;
    }
    if (!in.backward) continue;
    for (size_t s = last + 1; s-- > 0;) {
      if (s < last) {
        const ProgramMemory<S> from = memory(s + 1), to = memory(s);
        LF_CHECK(from.at.grad_out >= 0 && to.at.grad_in >= 0, "spec.programs: no gradient buffers between stages " << s + 1 << " and " << s);
        hand_on(to.arena + to.at.grad_in, from.arena + from.at.grad_out, n);
      }
      stages[s]->backward(cls, memory(s), rows);
    }
  }
  return loss;
}

// {loss, grads: per adapter {"LAYER.MODULE": {A, B}}}, from each site's dA and dB.
Napi::Object grad_result(const Napi::Env& env, const GradInput& in, double loss, const std::function<std::array<std::vector<double>, 2>(size_t, std::pair<int64_t, int>)>& grads_of) {
  Napi::Object out = Napi::Object::New(env);
  out.Set("loss", Napi::Number::New(env, loss));
  Napi::Array grads = Napi::Array::New(env, in.adapters.size());
  for (size_t a = 0; a < in.adapters.size(); a++) {
    Napi::Object g = Napi::Object::New(env);
    for (auto& [site, arrays] : in.adapters[a].sites) {
      const std::array<std::vector<double>, 2> d = grads_of(a, site);
      Napi::Object so = Napi::Object::New(env);
      for (int which = 0; which < 2; which++) {
        auto arr = Napi::Float64Array::New(env, d[which].size());
        std::copy(d[which].begin(), d[which].end(), arr.Data());
        so.Set(which == 0 ? "A" : "B", arr);
      }
      g.Set(std::to_string(site.first) + "." + kModuleNames[site.second], so);
    }
    grads.Set(static_cast<uint32_t>(a), g);
  }
  out.Set("grads", grads);
  return out;
}

// On the CPU backend, in S (double: the gradient checks' precision; float: training's).
template <typename S>
Napi::Value run_cpu(const Napi::Env& env, spec::Value& spec) {
  const GradInput in = read_input(spec);
  ProgramsSpec programs = read_programs(spec, in, spec::Units{});
  std::map<std::string, std::vector<S>> weights;
  for (auto& [name, v] : in.weights) weights[name] = std::vector<S>(v.begin(), v.end());
  std::vector<std::map<std::pair<int64_t, int>, std::array<std::vector<S>, 4>>> state(in.adapters.size());  // A, B, dA, dB
  for (size_t a = 0; a < in.adapters.size(); a++) {
    for (auto& [site, ab] : in.adapters[a].sites) {
      auto& m = state[a][site];
      m[0].assign(ab[0].begin(), ab[0].end());
      m[1].assign(ab[1].begin(), ab[1].end());
      m[2].assign(ab[0].size(), S(0));
      m[3].assign(ab[1].size(), S(0));
    }
  }
  CpuBackend<S> backend;
  std::vector<std::unique_ptr<ProgramExecutor<S>>> stages;
  std::vector<std::unique_ptr<AdapterOnStage<S>>> on_stage;
  std::vector<std::vector<S>> arenas;
  std::vector<S*> arena_ptrs;
  for (size_t s = 0; s < in.ranges.size(); s++) {
    std::vector<const S*> placed;
    for (const WeightSlotSpec& w : programs.stages[s].weights) {
      in.weight(w.name, w.numel());
      placed.push_back(weights.at(w.name).data());
    }
    auto memory = [&](size_t a, std::pair<int64_t, int> site) {
      auto& m = state[a][site];
      return std::array<S*, 4>{m[0].data(), m[1].data(), m[2].data(), m[3].data()};
    };
    stages.push_back(stage_executor<S>(in, programs, s, std::move(placed), backend, memory, on_stage));
    arenas.emplace_back(static_cast<size_t>(programs.stages[s].round_elems + programs.stages[s].work_elems));
  }
  for (auto& a : arenas) arena_ptrs.push_back(a.data());
  const double loss = run_batches<S>(in, programs, stages, arena_ptrs, [](S* to, const S* from, int64_t n) { std::copy(from, from + n, to); });
  return grad_result(env, in, loss, [&](size_t a, std::pair<int64_t, int> site) {
    auto& m = state[a][site];
    return std::array<std::vector<double>, 2>{std::vector<double>(m[2].begin(), m[2].end()), std::vector<double>(m[3].begin(), m[3].end())};
  });
}

// On the CUDA backend over the emulated GPU (device "emulated"; the fake cuBLASLt through
// LORAFLOW_CUBLASLT) or GPU 0 ("gpu"), running the spec's programs in their own dtype: base
// weights in it, LoRA weights and gradients in fp32.
Napi::Value run_device(const Napi::Env& env, spec::Value& spec, const std::string& device_kind) {
  const GradInput in = read_input(spec);
  ProgramsSpec programs = read_programs(spec, in, spec::Units{1});
  std::unique_ptr<cuda::Device> device;
  if (device_kind == "emulated") device = std::make_unique<cuda::EmuDevice>(cuda::EmuDevice::Options{});
  else device = cuda::open_cuda_device(0);
  const DType act = programs.stages[0].programs.empty() ? DType::kF32 : programs.stages[0].programs[0].activations;
  int64_t most_rows = 0;
  for (const MicroBatchRows& r : in.batches) most_rows = std::max(most_rows, r.T);
  // Host copies a queued upload reads live until every queued copy has run, so they are made
  // before the backend (whose end waits for its stream) and released after it.
  std::vector<std::vector<unsigned char>> staged;
  cuda::CudaBackend backend(*device, in.config, act, most_rows);
  auto& stream = backend.cuda_stream();
  // Device memory: each stage's weights (in the programs' dtype) and activation arena; every
  // adapter site's A, B, dA, dB in fp32. Released on the way out, a failure included.
  struct Owned {
    cuda::CudaBackend& backend;
    std::vector<std::byte*> blocks;
    ~Owned() {
      for (std::byte* p : blocks) {
        try {
          backend.release(p);
        } catch (...) {
        }
      }
    }
  } owned{backend, {}};
  auto device_copy = [&](const void* data, size_t bytes) {
    std::byte* p = backend.allocate(static_cast<int64_t>(bytes));
    owned.blocks.push_back(p);
    staged.emplace_back(static_cast<const unsigned char*>(data), static_cast<const unsigned char*>(data) + bytes);
    device->copy(p, staged.back().data(), bytes, stream);
    return p;
  };
  std::vector<std::map<std::pair<int64_t, int>, std::array<std::byte*, 4>>> state(in.adapters.size());
  for (size_t a = 0; a < in.adapters.size(); a++) {
    for (auto& [site, ab] : in.adapters[a].sites) {
      for (int which = 0; which < 2; which++) {
        const std::vector<float> f(ab[which].begin(), ab[which].end());
        state[a][site][which] = device_copy(f.data(), f.size() * 4);
        state[a][site][2 + which] = backend.allocate(static_cast<int64_t>(f.size() * 4));
        owned.blocks.push_back(state[a][site][2 + which]);
      }
    }
  }
  std::vector<std::unique_ptr<ProgramExecutor<std::byte>>> stages;
  std::vector<std::unique_ptr<AdapterOnStage<std::byte>>> on_stage;
  std::vector<std::byte*> arenas;
  for (size_t s = 0; s < in.ranges.size(); s++) {
    std::vector<const std::byte*> placed;
    for (const WeightSlotSpec& w : programs.stages[s].weights) {
      const std::vector<double>& v = in.weight(w.name, w.numel());
      if (w.dtype == DType::kBF16) {
        std::vector<cuda::bf16> b(v.size());
        for (size_t i = 0; i < v.size(); i++) b[i] = cuda::from_float<cuda::bf16>(static_cast<float>(v[i]));
        placed.push_back(device_copy(b.data(), b.size() * 2));
      } else {
        const std::vector<float> f(v.begin(), v.end());
        placed.push_back(device_copy(f.data(), f.size() * 4));
      }
    }
    auto memory = [&](size_t a, std::pair<int64_t, int> site) { return state[a][site]; };
    stages.push_back(stage_executor<std::byte>(in, programs, s, std::move(placed), backend, memory, on_stage));
    arenas.push_back(backend.allocate(programs.stages[s].round_elems + programs.stages[s].work_elems));
    owned.blocks.push_back(arenas.back());
  }
  device->synchronize(stream);
  const double loss = run_batches<std::byte>(in, programs, stages, arenas, [&](std::byte* to, const std::byte* from, int64_t n) { device->copy(to, from, static_cast<size_t>(n), stream); });
  device->synchronize(stream);
  Napi::Object out = grad_result(env, in, loss, [&](size_t a, std::pair<int64_t, int> site) {
    std::array<std::vector<double>, 2> d;
    for (int which = 0; which < 2; which++) {
      std::vector<float> f(in.adapters[a].sites.at(site)[which].size());
      device->copy(f.data(), state[a][site][2 + which], f.size() * 4, stream);
      device->synchronize(stream);
      d[which].assign(f.begin(), f.end());
    }
    return d;
  });
  return out;
}

}  // namespace

Napi::Value ModelGrad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "modelGrad(spec)");
  try {
    spec::Value spec = js::to_spec(info[0], "spec");
    const std::string backend = spec.has("backend") ? spec::text(spec, "backend", "spec") : "cpu";
    if (backend == "cuda-emulated") return run_device(env, spec, "emulated");
    if (backend == "cuda") return run_device(env, spec, "gpu");
    LF_CHECK(backend == "cpu", "backend must be \"cpu\", \"cuda\" or \"cuda-emulated\"");
    const std::string precision = spec.has("precision") ? spec::text(spec, "precision", "spec") : "double";
    if (precision == "float") return run_cpu<float>(env, spec);
    LF_CHECK(precision == "double", "precision must be \"double\" or \"float\"");
    return run_cpu<double>(env, spec);
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, std::string("modelGrad: ") + e.what());
  }
}

}  // namespace loraflow
