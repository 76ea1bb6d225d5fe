// generator.h: a Llama with its LoRA adapter for generation, one sequence at a time, with a KV
// cache: feed(tokens) runs the new tokens against every key and value cached before them and
// gives the logits after the last. The same arithmetic whether a sequence is fed at once or a
// token at a time (every dot product in one order, accumulated in double), so a cached run
// produces exactly the logits of recomputing the whole sequence.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "model/llama_config.h"
#include "train/stage_engine.h"

namespace loraflow {

class Generator {
 public:
  // weights: Hugging Face names, fp32. lora: the adapter's sites (may be empty), scaled by `scale`.
  Generator(LlamaConfig config, std::map<std::string, std::vector<float>> weights, SiteWeights lora, int64_t rank, double scale, int64_t max_tokens);

  // Appends n tokens to the sequence; returns the logits [vocab] after the last.
  const std::vector<float>& feed(const int32_t* tokens, int64_t n);
  // Forgets the sequence (the cache is kept allocated).
  void reset() { length_ = 0; }
  int64_t length() const { return length_; }
  int64_t capacity() const { return max_tokens_; }

 private:
  const std::vector<float>& weight(const std::string& name, int64_t n) const;
  // y[n, out] = x[n, in] W^T (+ scale * x A^T B^T for the layer's site of module m).
  void linear(float* y, const float* x, int64_t n, int64_t layer, int m);

  LlamaConfig c_;
  std::map<std::string, std::vector<float>> weights_;
  SiteWeights lora_;
  int64_t rank_;
  double scale_;
  int64_t max_tokens_;
  int64_t length_ = 0;
  std::vector<float> inv_freq_;
  std::vector<float> k_cache_, v_cache_;  // [layers, max_tokens, kv_dim]
  std::vector<float> logits_;             // [vocab]
};

}  // namespace loraflow
