// stage_layout.cc: see stage_layout.h.
#include "train/stage_layout.h"

#include <cmath>

namespace loraflow {

std::vector<std::pair<std::string, int64_t>> stage_weight_tensors(const LlamaConfig& c, const StageSpec& ss, size_t stage, int64_t unit_bytes) {
  std::vector<std::pair<std::string, int64_t>> names;
  if (ss.embedding || (ss.head && c.tie_embeddings)) names.push_back({"model.embed_tokens.weight", c.vocab * c.hidden});
  const auto [l0, l1] = stage_layers(ss);
  // Only the halves of layers whose blocks the stage runs: a layer split between two stages
  // has its attention weights on one and its MLP weights on the other.
  for (int64_t l = l0; l < l1; l++) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    const bool attention = 2 * l >= ss.first_block, mlp = 2 * l + 1 < ss.last_block;
    if (attention) names.push_back({p + "input_layernorm.weight", c.hidden});
    if (mlp) names.push_back({p + "post_attention_layernorm.weight", c.hidden});
    for (int m = 0; m < kModules; m++) {
      if (!stage_has_site(ss, {l, m})) continue;
      names.push_back({p + kModuleParents[m] + "." + kModuleNames[m] + ".weight", module_in(c, m) * module_out(c, m)});
    }
  }
  if (ss.head) {
    names.push_back({"model.norm.weight", c.hidden});
    if (!c.tie_embeddings) names.push_back({"lm_head.weight", c.vocab * c.hidden});
  }
  const std::string where = "stage " + std::to_string(stage);
  LF_CHECK(ss.compiled.weights.size() == names.size(), where << ": the plan's weight table has " << ss.compiled.weights.size() << " tensors, the stage reads " << names.size());
  int64_t total = 0;
  for (size_t i = 0; i < names.size(); i++) {
    const WeightSlotSpec& slot = ss.compiled.weights[i];
    LF_CHECK(slot.name == names[i].first && slot.numel() == names[i].second && slot.offset == total,
             where << ": weight table entry " << i << " is " << slot.name << ", expected " << names[i].first << " at " << total);
    total += names[i].second * dtype_bytes(slot.dtype) / unit_bytes;
  }
  return names;
}

const std::vector<float>& checked_base_weight(const TrainSpec& spec, const std::string& name, int64_t n) {
  auto it = spec.weights.find(name);
  LF_CHECK(it != spec.weights.end(), "base weight `" << name << "` is missing");
  LF_CHECK(static_cast<int64_t>(it->second.size()) == n, "base weight `" << name << "` has " << it->second.size() << " values, expected " << n);
  for (size_t i = 0; i < it->second.size(); i++) {
    LF_CHECK(std::isfinite(it->second[i]), "base weight `" << name << "` holds a value that is not finite (" << it->second[i] << ") at index " << i);
  }
  return it->second;
}

int64_t adapter_state_values(const TrainSpec& spec, const StageSpec& ss, size_t stage) {
  int64_t values = 0;
  for (const AdapterSpec& a : spec.adapters) {
    for (auto& [site, ab] : a.init) {
      const int64_t n = static_cast<int64_t>(ab.first.size()) + static_cast<int64_t>(ab.second.size());
      if (stage_has_site(ss, site)) values += (2 + optimizer_moments(a.optimizer)) * n;
    }
  }
  return values;
}

const std::vector<float>* initial_moments(const AdapterSpec& a, std::pair<int64_t, int> site, int64_t n) {
  auto it = a.moments.find(site);
  if (it == a.moments.end()) return nullptr;
  const int64_t k = optimizer_moments(a.optimizer);
  LF_CHECK(static_cast<int64_t>(it->second.size()) == k * n, "adapter " << a.name << ": layer " << site.first << " " << kModuleNames[site.second] << " has " << it->second.size() << " optimizer moment values, expected " << k * n);
  return &it->second;
}

void check_site_shapes(const TrainSpec& spec, const AdapterSpec& a, std::pair<int64_t, int> site, const std::vector<float>& A, const std::vector<float>& B) {
  const int64_t in = module_in(spec.config, site.second), out = module_out(spec.config, site.second);
  LF_CHECK(static_cast<int64_t>(A.size()) == a.rank * in && static_cast<int64_t>(B.size()) == out * a.rank,
           "adapter " << a.name << ": layer " << site.first << " " << kModuleNames[site.second] << " has the wrong LoRA shapes");
}

}  // namespace loraflow
