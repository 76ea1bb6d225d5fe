// model_binding.cc: `modelGrad(spec)`, a whole model cut into stages run one micro-batch at a
// time on the calling thread: the summed loss and (unless `backward: false`, which `eval` uses)
// every adapter's LoRA gradients, in double or float. The stages run their compiled programs
// (spec.programs, which runtime/native.ts lowers for the spec) on the CPU backend, the same
// executor training uses. The tests difference the loss numerically against these gradients
// end to end, and compare stage cuts and fusions.
#include <napi.h>

#include <array>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "binding/js_args.h"
#include "core/check.h"
#include "binding/program_args.h"
#include "cpu/cpu_backend.h"
#include "program/executor.h"

namespace loraflow {
namespace {


template <typename S>
struct ModelRun {
  LlamaConfig config;
  std::map<std::string, std::vector<S>> weights;                 // by Hugging Face name
  std::vector<std::vector<std::vector<S>>> adapter_storage;       // [adapter][site] A, B, dA, dB flattened
  std::vector<std::vector<std::unique_ptr<AdapterOnStage<S>>>> on_stage;  // [stage][adapter]
  CpuBackend<S> backend;
  std::vector<std::unique_ptr<ProgramExecutor<S>>> stages;
  std::vector<std::vector<S>> arenas;  // per stage: [round region | workspace]
  std::vector<std::vector<RoundBuffers>> rounds;  // per stage, per micro-batch

  const S* weight(const std::string& name, int64_t expected) const {
    auto it = weights.find(name);
    LF_CHECK(it != weights.end(), "weights: `" << name << "` is missing");
    LF_CHECK(static_cast<int64_t>(it->second.size()) == expected, "weights: `" << name << "` has " << it->second.size() << " elements, expected " << expected);
    return it->second.data();
  }
};

template <typename S>
std::vector<S> convert(const std::vector<double>& v) {
  return std::vector<S>(v.begin(), v.end());
}

template <typename S>
Napi::Value run(const Napi::Env& env, const Napi::Object& spec) {
  ModelRun<S> m;
  m.config = js::llama_config(js::object(spec, "config", "spec"));
  const LlamaConfig& c = m.config;

  Napi::Object weights = js::object(spec, "weights", "spec");
  Napi::Array names = weights.GetPropertyNames();
  for (uint32_t i = 0; i < names.Length(); i++) {
    std::string name = names.Get(i).As<Napi::String>();
    m.weights[name] = convert<S>(js::reals(weights.Get(name), -1, "weights." + name));
  }

  // Adapters: per site "LAYER.MODULE" -> { A, B }; gradients live beside them.
  Napi::Array adapters = js::array(spec, "adapters", "spec");
  struct AdapterInfo {
    int64_t rank;
    double scale, dropout;
    std::map<std::pair<int64_t, int>, std::array<std::vector<S>, 4>> sites;  // A, B, dA, dB
  };
  std::vector<AdapterInfo> infos(adapters.Length());
  for (uint32_t a = 0; a < adapters.Length(); a++) {
    const std::string where = "adapters[" + std::to_string(a) + "]";
    Napi::Object ao = adapters.Get(a).As<Napi::Object>();
    AdapterInfo& info = infos[a];
    info.rank = js::integer(ao, "rank", where);
    info.scale = js::number(ao, "scale", where);
    info.dropout = js::number(ao, "dropout", where);
    LF_CHECK(info.rank > 0 && info.dropout >= 0 && info.dropout < 1, where << ": rank must be positive, dropout in [0, 1)");
    Napi::Object sites = js::object(ao, "sites", where);
    Napi::Array keys = sites.GetPropertyNames();
    for (uint32_t k = 0; k < keys.Length(); k++) {
      std::string key = keys.Get(k).As<Napi::String>();
      const auto [layer, module] = js::lora_site(key, c, where);
      Napi::Object so = sites.Get(key).As<Napi::Object>();
      const int64_t in = module_in(c, module), out = module_out(c, module);
      auto& arrays = info.sites[{layer, module}];
      arrays[0] = convert<S>(js::reals(js::field(so, "A", where), info.rank * in, where + "." + key + ".A"));
      arrays[1] = convert<S>(js::reals(js::field(so, "B", where), out * info.rank, where + "." + key + ".B"));
      arrays[2].assign(arrays[0].size(), S(0));
      arrays[3].assign(arrays[1].size(), S(0));
    }
  }

  Napi::Array stage_ranges = js::array(spec, "stages", "spec");
  LF_CHECK(stage_ranges.Length() > 0, "spec: `stages` is empty");
  std::vector<std::pair<int64_t, int64_t>> ranges;
  int64_t next_block = 0;
  for (uint32_t s = 0; s < stage_ranges.Length(); s++) {
    Napi::Array r = stage_ranges.Get(s).As<Napi::Array>();
    const int64_t b0 = r.Get(0u).As<Napi::Number>().Int64Value(), b1 = r.Get(1u).As<Napi::Number>().Int64Value();
    LF_CHECK(b0 == next_block && b1 > b0, "stages[" << s << "] does not continue from block " << next_block);
    next_block = b1;
    ranges.push_back({b0, b1});
  }
  LF_CHECK(next_block == 2 * c.layers, "spec: the stages cover blocks [0, " << next_block << ") of " << 2 * c.layers);
  // Every weight a stage reads must be given, with its shape.
  for (size_t s = 0; s < ranges.size(); s++) {
    const bool first = s == 0, last = s + 1 == ranges.size();
    if (first || (last && c.tie_embeddings)) m.weight("model.embed_tokens.weight", c.vocab * c.hidden);
    if (last) {
      m.weight("model.norm.weight", c.hidden);
      if (!c.tie_embeddings) m.weight("lm_head.weight", c.vocab * c.hidden);
    }
    for (int64_t l = ranges[s].first / 2; l < (ranges[s].second + 1) / 2; l++) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      if (2 * l >= ranges[s].first) m.weight(p + "input_layernorm.weight", c.hidden);
      if (2 * l + 1 < ranges[s].second) m.weight(p + "post_attention_layernorm.weight", c.hidden);
      for (int mm = 0; mm < kModules; mm++) {
        const int64_t b = module_block(l, mm);
        if (b >= ranges[s].first && b < ranges[s].second) m.weight(p + kModuleParents[mm] + "." + kModuleNames[mm] + ".weight", module_in(c, mm) * module_out(c, mm));
      }
    }
  }

  Napi::Array mbs = js::array(spec, "microBatches", "spec");
  const bool backward = !spec.Has("backward") || js::boolean(spec, "backward", "spec");
  std::vector<MicroBatchRows> batches;
  for (uint32_t i = 0; i < mbs.Length(); i++) {
    const std::string where = "microBatches[" + std::to_string(i) + "]";
    Napi::Object mo = mbs.Get(i).As<Napi::Object>();
    MicroBatchRows rows;
    rows.tokens = js::ints(js::field(mo, "tokens", where), -1, where + ".tokens");
    rows.T = static_cast<int64_t>(rows.tokens.size());
    rows.targets = js::ints(js::field(mo, "targets", where), rows.T, where + ".targets");
    rows.seg_start = js::ints(js::field(mo, "segStart", where), rows.T, where + ".segStart");
    rows.pos = js::ints(js::field(mo, "pos", where), rows.T, where + ".pos");
    rows.row_keys = js::keys(js::field(mo, "rowKeys", where), rows.T, where + ".rowKeys");
    for (int64_t t = 0; t < rows.T; t++) {
      LF_CHECK(rows.tokens[t] >= 0 && rows.tokens[t] < c.vocab, where << ": token " << rows.tokens[t] << " at row " << t << " is outside the vocabulary");
      LF_CHECK(rows.targets[t] == -100 || (rows.targets[t] >= 0 && rows.targets[t] < c.vocab), where << ": target at row " << t << " is outside the vocabulary");
      LF_CHECK(rows.seg_start[t] >= 0 && rows.seg_start[t] <= t, where << ": segStart[" << t << "] must be in [0, " << t << "]");
    }
    Napi::Array parts = js::array(mo, "parts", where);
    int64_t row = 0;
    for (uint32_t p = 0; p < parts.Length(); p++) {
      Napi::Object po = parts.Get(p).As<Napi::Object>();
      AdapterRows part;
      part.adapter = static_cast<int>(js::integer(po, "adapter", where));
      part.row0 = js::integer(po, "row0", where);
      part.rows = js::integer(po, "rows", where);
      part.grad_scale = js::number(po, "gradScale", where);
      LF_CHECK(part.adapter >= 0 && part.adapter < static_cast<int>(infos.size()), where << ": part " << p << " names adapter " << part.adapter);
      LF_CHECK(part.row0 == row && part.rows > 0, where << ": parts must cover the rows in order");
      row += part.rows;
      rows.parts.push_back(part);
    }
    LF_CHECK(row == rows.T, where << ": parts cover " << row << " of " << rows.T << " rows");
    batches.push_back(std::move(rows));
  }

  // The programs: micro-batch i is phase 0's micro-batch i, one at a time through the stages.
  ProgramsSpec programs = js::programs(js::object(spec, "programs", "spec"));
  LF_CHECK(programs.stages.size() == ranges.size() && programs.class_of.size() == 1 && programs.class_of[0].size() == batches.size(),
           "spec.programs does not describe these stages and micro-batches");
  for (size_t s = 0; s < ranges.size(); s++) {
    StageProgramsSpec& sp = programs.stages[s];
    std::vector<const S*> placed;
    for (const WeightSlotSpec& w : sp.weights) placed.push_back(m.weight(w.name, w.numel()));
    auto exec = std::make_unique<ProgramExecutor<S>>(c, ranges[s].first, ranges[s].second, programs.classes, std::move(sp.programs), sp.weights, std::move(placed), m.backend);
    LF_CHECK(sp.work_elems >= exec->max_work() && sp.rounds.size() == 1 && sp.rounds[0].size() == batches.size(), "spec.programs: stage " << s << "'s arena does not hold its programs");
    for (size_t i = 0; i < batches.size(); i++) {
      // Stages hand each other [T, C] rows before a program checks them: T must be the class's.
      LF_CHECK(programs.classes[static_cast<size_t>(programs.class_of[0][i])].rows == batches[i].T, "spec.programs: micro-batch " << i << " is not its class's rows");
      exec->check_buffers(programs.class_of[0][i], sp.rounds[0][i], sp.round_elems, "spec.programs: stage " + std::to_string(s) + "'s micro-batch " + std::to_string(i));
    }
    m.arenas.emplace_back(static_cast<size_t>(sp.round_elems + sp.work_elems));
    const int64_t l0 = ranges[s].first / 2, l1 = (ranges[s].second + 1) / 2;
    m.on_stage.emplace_back();
    for (size_t a = 0; a < infos.size(); a++) {
      auto on = std::make_unique<AdapterOnStage<S>>();
      on->rank = infos[a].rank;
      on->scale = infos[a].scale;
      on->dropout = infos[a].dropout;
      on->layers.resize(static_cast<size_t>(l1 - l0));
      for (int64_t l = l0; l < l1; l++) {
        for (int mm = 0; mm < kModules; mm++) {
          auto it = infos[a].sites.find({l, mm});
          if (it == infos[a].sites.end()) continue;
          auto& site = on->layers[static_cast<size_t>(l - l0)][static_cast<size_t>(mm)];
          site.A = it->second[0].data();
          site.B = it->second[1].data();
          site.dA = it->second[2].data();
          site.dB = it->second[3].data();
        }
      }
      exec->set_adapter(static_cast<int>(a), on.get());
      m.on_stage.back().push_back(std::move(on));
    }
    m.stages.push_back(std::move(exec));
    m.rounds.push_back(std::move(sp.rounds[0]));
  }

  double loss = 0;
  const size_t last = m.stages.size() - 1;
  for (size_t i = 0; i < batches.size(); i++) {
    const MicroBatchRows& rows = batches[i];
    const int cls = programs.class_of[0][i];
    const int64_t n = rows.T * c.hidden;
    auto memory = [&](size_t s) {
      S* arena = m.arenas[s].data();
      return ProgramMemory<S>{arena, m.rounds[s][i], arena + programs.stages[s].round_elems};
    };
    for (size_t s = 0; s <= last; s++) {
      if (s > 0) {
        const ProgramMemory<S> from = memory(s - 1), to = memory(s);
        LF_CHECK(from.at.act_out >= 0 && to.at.act_in >= 0, "spec.programs: no activation buffers between stages " << s - 1 << " and " << s);
        std::copy(from.arena + from.at.act_out, from.arena + from.at.act_out + n, to.arena + to.at.act_in);
      }
      const double l = m.stages[s]->forward(cls, memory(s), rows);
      if (s == last) loss += l;
    }
    if (!backward) continue;
    for (size_t s = last + 1; s-- > 0;) {
      if (s < last) {
        const ProgramMemory<S> from = memory(s + 1), to = memory(s);
        LF_CHECK(from.at.grad_out >= 0 && to.at.grad_in >= 0, "spec.programs: no gradient buffers between stages " << s + 1 << " and " << s);
        std::copy(from.arena + from.at.grad_out, from.arena + from.at.grad_out + n, to.arena + to.at.grad_in);
      }
      m.stages[s]->backward(cls, memory(s), rows);
    }
  }

  Napi::Object out = Napi::Object::New(env);
  out.Set("loss", Napi::Number::New(env, loss));
  Napi::Array grads = Napi::Array::New(env, infos.size());
  for (size_t a = 0; a < infos.size(); a++) {
    Napi::Object g = Napi::Object::New(env);
    for (auto& [site, arrays] : infos[a].sites) {
      Napi::Object so = Napi::Object::New(env);
      for (int which = 0; which < 2; which++) {
        auto arr = Napi::Float64Array::New(env, arrays[2 + which].size());
        std::copy(arrays[2 + which].begin(), arrays[2 + which].end(), arr.Data());
        so.Set(which == 0 ? "A" : "B", arr);
      }
      g.Set(std::to_string(site.first) + "." + kModuleNames[site.second], so);
    }
    grads.Set(static_cast<uint32_t>(a), g);
  }
  out.Set("grads", grads);
  return out;
}

}  // namespace

Napi::Value ModelGrad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "modelGrad(spec)");
  Napi::Object spec = info[0].As<Napi::Object>();
  try {
    const std::string precision = spec.Has("precision") ? spec.Get("precision").As<Napi::String>().Utf8Value() : "double";
    if (precision == "float") return run<float>(env, spec);
    LF_CHECK(precision == "double", "precision must be \"double\" or \"float\"");
    return run<double>(env, spec);
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, std::string("modelGrad: ") + e.what());
  }
}

}  // namespace loraflow
