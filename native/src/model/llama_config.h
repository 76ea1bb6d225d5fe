// llama_config.h: the architecture numbers a stage needs (the plan's model.config).
#pragma once
#include <cstdint>

namespace loraflow {

struct LlamaConfig {
  int64_t layers = 0, hidden = 0, heads = 0, kv_heads = 0, head_dim = 0, ffn = 0, vocab = 0;
  double rope_theta = 10000, norm_eps = 1e-6;
  bool tie_embeddings = false;

  int64_t q_dim() const { return heads * head_dim; }
  int64_t kv_dim() const { return kv_heads * head_dim; }
};

// LoRA target modules, in the order the plan and PEFT name them.
enum Module : int { kQ = 0, kK, kV, kO, kGate, kUp, kDown, kModules };

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
