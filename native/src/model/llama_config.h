// llama_config.h: the architecture numbers a stage needs (the plan's model.config).
#pragma once
#include <cstdint>
#include <string>

namespace loraflow {

struct LlamaConfig {
  int64_t layers = 0, hidden = 0, heads = 0, kv_heads = 0, head_dim = 0, ffn = 0, vocab = 0;
  double rope_theta = 10000, norm_eps = 1e-6;
  bool tie_embeddings = false;
  // RoPE scaling as Hugging Face's rope_scaling names it: none, linear (factor), or llama3
  // (factor, low_freq_factor, high_freq_factor, original_max_position_embeddings).
  enum RopeScaling { kNone = 0, kLinear, kLlama3 } rope_scaling = kNone;
  double rope_factor = 1, rope_low_freq_factor = 1, rope_high_freq_factor = 4, rope_original_max = 8192;

  int64_t q_dim() const { return heads * head_dim; }
  int64_t kv_dim() const { return kv_heads * head_dim; }
};

// LoRA target modules, in the order the plan and PEFT name them.
enum Module : int { kQ = 0, kK, kV, kO, kGate, kUp, kDown, kModules };

// Hugging Face's names: model.layers.{i}.{parent}.{name}.weight.
inline constexpr const char* kModuleNames[kModules] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
inline constexpr const char* kModuleParents[kModules] = {"self_attn", "self_attn", "self_attn", "self_attn", "mlp", "mlp", "mlp"};

// The module a PEFT-style name ("q_proj") stands for, or -1.
inline int module_index(const std::string& name) {
  for (int m = 0; m < kModules; m++) if (name == kModuleNames[m]) return m;
  return -1;
}

// The layer block a module runs in: 2l for attention's q k v o, 2l + 1 for the MLP's.
inline int64_t module_block(int64_t layer, int m) { return 2 * layer + (m >= kGate ? 1 : 0); }

inline int64_t module_in(const LlamaConfig& c, int m) {
  switch (m) {
    case kO: return c.q_dim();
    case kDown: return c.ffn;
    default: return c.hidden;
  }
}

inline int64_t module_out(const LlamaConfig& c, int m) {
  switch (m) {
    case kQ: return c.q_dim();
    case kK:
    case kV: return c.kv_dim();
    case kGate:
    case kUp: return c.ffn;
    default: return c.hidden;
  }
}

}  // namespace loraflow
