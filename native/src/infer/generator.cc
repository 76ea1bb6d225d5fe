// generator.cc: see generator.h.
#include "infer/generator.h"

#include <cmath>

#include "core/check.h"
#include "model/ops.h"

namespace loraflow {

namespace {

// sum_k a[k] b[k], in order, in double: the one way every product here is formed.
double dot(const float* a, const float* b, int64_t n) {
  double s = 0;
  for (int64_t k = 0; k < n; k++) s += static_cast<double>(a[k]) * b[k];
  return s;
}

}  // namespace

Generator::Generator(LlamaConfig config, std::map<std::string, std::vector<float>> weights, SiteWeights lora, int64_t rank, double scale, int64_t max_tokens)
    : c_(config), weights_(std::move(weights)), lora_(std::move(lora)), rank_(rank), scale_(scale), max_tokens_(max_tokens) {
  LF_CHECK(max_tokens_ >= 1 && max_tokens_ <= (int64_t(1) << 24), "generate: a sequence of " << max_tokens_ << " tokens");
  // Every tensor the model reads, present and shaped as the config says, before anything runs.
  weight("model.embed_tokens.weight", c_.vocab * c_.hidden);
  for (int64_t l = 0; l < c_.layers; l++) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    weight(p + "input_layernorm.weight", c_.hidden);
    weight(p + "post_attention_layernorm.weight", c_.hidden);
    for (int m = 0; m < kModules; m++) weight(p + kModuleParents[m] + "." + kModuleNames[m] + ".weight", module_in(c_, m) * module_out(c_, m));
  }
  weight("model.norm.weight", c_.hidden);
  if (!c_.tie_embeddings) weight("lm_head.weight", c_.vocab * c_.hidden);
  for (const auto& [site, ab] : lora_) {
    LF_CHECK(site.first >= 0 && site.first < c_.layers && site.second >= 0 && site.second < kModules, "generate: a LoRA site outside the model");
    LF_CHECK(static_cast<int64_t>(ab.first.size()) == rank_ * module_in(c_, site.second) && static_cast<int64_t>(ab.second.size()) == module_out(c_, site.second) * rank_,
             "generate: layer " << site.first << " " << kModuleNames[site.second] << " has the wrong LoRA shapes for rank " << rank_);
  }
  inv_freq_ = ops::rope_inv_freq(c_);
  k_cache_.assign(static_cast<size_t>(c_.layers * max_tokens_ * c_.kv_dim()), 0.0f);
  v_cache_.assign(k_cache_.size(), 0.0f);
  logits_.assign(static_cast<size_t>(c_.vocab), 0.0f);
}

const std::vector<float>& Generator::weight(const std::string& name, int64_t n) const {
  auto it = weights_.find(name);
  LF_CHECK(it != weights_.end(), "generate: base weight `" << name << "` is missing");
  LF_CHECK(static_cast<int64_t>(it->second.size()) == n, "generate: base weight `" << name << "` has " << it->second.size() << " values, expected " << n);
  return it->second;
}

void Generator::linear(float* y, const float* x, int64_t n, int64_t layer, int m) {
  const int64_t in = module_in(c_, m), out = module_out(c_, m);
  const std::string name = "model.layers." + std::to_string(layer) + "." + kModuleParents[m] + "." + kModuleNames[m] + ".weight";
  const float* W = weights_.at(name).data();  // [out, in]
  auto site = lora_.find({layer, m});
  std::vector<float> h(static_cast<size_t>(rank_));
  for (int64_t t = 0; t < n; t++) {
    const float* xt = x + t * in;
    float* yt = y + t * out;
    for (int64_t o = 0; o < out; o++) yt[o] = static_cast<float>(dot(xt, W + o * in, in));
    if (site == lora_.end()) continue;
    const float* A = site->second.first.data();   // [r, in]
    const float* B = site->second.second.data();  // [out, r]
    for (int64_t r = 0; r < rank_; r++) h[static_cast<size_t>(r)] = static_cast<float>(dot(xt, A + r * in, in));
    for (int64_t o = 0; o < out; o++) yt[o] += static_cast<float>(scale_ * dot(h.data(), B + o * rank_, rank_));
  }
}

const std::vector<float>& Generator::feed(const int32_t* tokens, int64_t n) {
  LF_CHECK(n >= 1, "generate: nothing to feed");
  LF_CHECK(length_ + n <= max_tokens_, "generate: " << length_ + n << " tokens, more than the " << max_tokens_ << " this generator holds");
  for (int64_t t = 0; t < n; t++) LF_CHECK(tokens[t] >= 0 && tokens[t] < c_.vocab, "generate: token " << tokens[t] << " is outside the vocabulary of " << c_.vocab);
  const int64_t C = c_.hidden, H = c_.heads, KV = c_.kv_heads, hd = c_.head_dim, q_dim = c_.q_dim(), kv_dim = c_.kv_dim(), F = c_.ffn;
  const int64_t p0 = length_;
  std::vector<float> x(static_cast<size_t>(n * C)), xn(x.size()), rstd(static_cast<size_t>(n));  // [n, C] residual, normed
  std::vector<float> q(static_cast<size_t>(n * q_dim)), att(q.size());                           // [n, H*hd]
  std::vector<float> gate(static_cast<size_t>(n * F)), up(gate.size());                          // [n, F]
  std::vector<float> delta(x.size());                                                            // [n, C] a block's output
  std::vector<int32_t> pos(static_cast<size_t>(n));
  for (int64_t t = 0; t < n; t++) pos[static_cast<size_t>(t)] = static_cast<int32_t>(p0 + t);
  ops::embedding_forward(x.data(), tokens, weights_.at("model.embed_tokens.weight").data(), n, C);
  std::vector<double> scores(static_cast<size_t>(p0 + n));
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  for (int64_t l = 0; l < c_.layers; l++) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    float* K = k_cache_.data() + l * max_tokens_ * kv_dim;  // [max_tokens, kv_dim]
    float* V = v_cache_.data() + l * max_tokens_ * kv_dim;
    ops::rmsnorm_forward(xn.data(), rstd.data(), x.data(), weights_.at(p + "input_layernorm.weight").data(), n, C, c_.norm_eps);
    linear(q.data(), xn.data(), n, l, kQ);
    linear(K + p0 * kv_dim, xn.data(), n, l, kK);
    linear(V + p0 * kv_dim, xn.data(), n, l, kV);
    ops::rope_apply(q.data(), pos.data(), inv_freq_.data(), n, H, hd, false);
    ops::rope_apply(K + p0 * kv_dim, pos.data(), inv_freq_.data(), n, KV, hd, false);
    // Each new row attends to every cached row up to its own position.
    for (int64_t t = 0; t < n; t++) {
      const int64_t visible = p0 + t + 1;
      for (int64_t h = 0; h < H; h++) {
        const int64_t g = h / (H / KV);
        const float* qh = q.data() + t * q_dim + h * hd;
        double m = -INFINITY;
        for (int64_t j = 0; j < visible; j++) m = std::max(m, scores[static_cast<size_t>(j)] = scale * dot(qh, K + j * kv_dim + g * hd, hd));
        double sum = 0;
        for (int64_t j = 0; j < visible; j++) sum += (scores[static_cast<size_t>(j)] = std::exp(scores[static_cast<size_t>(j)] - m));
        float* oh = att.data() + t * q_dim + h * hd;
        for (int64_t d = 0; d < hd; d++) {
          double acc = 0;
          for (int64_t j = 0; j < visible; j++) acc += scores[static_cast<size_t>(j)] * V[j * kv_dim + g * hd + d];
          oh[d] = static_cast<float>(acc / sum);
        }
      }
    }
    linear(delta.data(), att.data(), n, l, kO);
    for (size_t i = 0; i < x.size(); i++) x[i] += delta[i];
    ops::rmsnorm_forward(xn.data(), rstd.data(), x.data(), weights_.at(p + "post_attention_layernorm.weight").data(), n, C, c_.norm_eps);
    linear(gate.data(), xn.data(), n, l, kGate);
    linear(up.data(), xn.data(), n, l, kUp);
    ops::swiglu_forward(gate.data(), gate.data(), up.data(), n * F);
    linear(delta.data(), gate.data(), n, l, kDown);
    for (size_t i = 0; i < x.size(); i++) x[i] += delta[i];
  }
  length_ += n;
  // The head reads the last row only.
  const float* last = x.data() + (n - 1) * C;
  ops::rmsnorm_forward(xn.data(), rstd.data(), last, weights_.at("model.norm.weight").data(), 1, C, c_.norm_eps);
  const float* head = weights_.at(c_.tie_embeddings ? "model.embed_tokens.weight" : "lm_head.weight").data();  // [vocab, C]
  for (int64_t v = 0; v < c_.vocab; v++) logits_[static_cast<size_t>(v)] = static_cast<float>(dot(xn.data(), head + v * C, C));
  return logits_;
}

}  // namespace loraflow
