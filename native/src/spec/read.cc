// read.cc: see read.h.
#include "spec/read.h"

namespace loraflow::spec {

LlamaConfig llama_config(const Value& o) {
  const std::string w = "config";
  LlamaConfig c;
  c.layers = integer(o, "layers", w);
  c.hidden = integer(o, "hidden", w);
  c.heads = integer(o, "heads", w);
  c.kv_heads = integer(o, "kvHeads", w);
  c.head_dim = integer(o, "headDim", w);
  c.ffn = integer(o, "ffn", w);
  c.vocab = integer(o, "vocab", w);
  c.rope_theta = number(o, "ropeTheta", w);
  c.norm_eps = number(o, "normEps", w);
  c.tie_embeddings = boolean(o, "tieEmbeddings", w);
  LF_CHECK(c.layers > 0 && c.hidden > 0 && c.heads > 0 && c.kv_heads > 0 && c.head_dim > 0 && c.ffn > 0 && c.vocab > 0, "config: sizes must be positive");
  LF_CHECK(c.heads % c.kv_heads == 0 && c.head_dim % 2 == 0, "config: heads must be a multiple of kvHeads, headDim even");
  // The job language's bounds: sizes past them are no model anyone trains, and would only make
  // the products below overflow.
  LF_CHECK(c.layers <= 1024 && c.hidden <= (1 << 20) && c.heads <= 4096 && c.head_dim <= (1 << 16) && c.ffn <= (1 << 22) && c.vocab <= (1 << 24),
           "config: a size is beyond what loraflow takes (layers 1024, hidden 2^20, heads 4096, head_dim 2^16, ffn 2^22, vocab 2^24)");
  if (o.has("ropeScaling") && o.find("ropeScaling")->is_object()) {
    const Value& s = *o.find("ropeScaling");
    const std::string type = s.has("rope_type") && s.find("rope_type")->is_string() ? s.find("rope_type")->as_string() : "";
    LF_CHECK(type == "linear" || type == "llama3", "config: ropeScaling of type `" << type << "` is not implemented");
    c.rope_scaling = type == "linear" ? LlamaConfig::kLinear : LlamaConfig::kLlama3;
    c.rope_factor = number(s, "factor", "config.ropeScaling");
    if (c.rope_scaling == LlamaConfig::kLlama3) {
      c.rope_low_freq_factor = number(s, "low_freq_factor", "config.ropeScaling");
      c.rope_high_freq_factor = number(s, "high_freq_factor", "config.ropeScaling");
      c.rope_original_max = number(s, "original_max_position_embeddings", "config.ropeScaling");
    }
    LF_CHECK(std::isfinite(c.rope_factor) && c.rope_factor > 0 && c.rope_low_freq_factor > 0 && c.rope_high_freq_factor > c.rope_low_freq_factor && c.rope_original_max > 0,
             "config: ropeScaling's numbers are out of range");
  }
  LF_CHECK(std::isfinite(c.rope_theta) && c.rope_theta > 0 && std::isfinite(c.norm_eps) && c.norm_eps > 0, "config: ropeTheta and normEps must be positive");
  return c;
}

}  // namespace loraflow::spec
