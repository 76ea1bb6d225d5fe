// optimizer.h: per-adapter optimizers with PyTorch's semantics, learning-rate schedules with
// Hugging Face's (get_scheduler: step k of the run uses lambda(k), k from 0), and
// clip_grad_norm_'s clipping coefficient.
#pragma once
#include <cmath>
#include <cstdint>
#include <string>

namespace loraflow {

struct OptimizerConfig {
  enum Kind { kAdamW, kSgd } kind = kAdamW;
  double lr = 5e-5, weight_decay = 0, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, momentum = 0;
  int64_t warmup = 0;
  enum Schedule { kConstant, kLinear, kCosine } schedule = kLinear;
  double min_lr = 0;
  double clip = 1.0;  // 0: no clipping
};

// The learning rate of 0-based step k of `total`: linear warm-up from 0, then constant, linear or
// cosine decay from lr to min_lr.
inline double learning_rate(const OptimizerConfig& o, int64_t k, int64_t total) {
  if (k < o.warmup) return o.lr * static_cast<double>(k) / static_cast<double>(std::max<int64_t>(1, o.warmup));
  if (o.schedule == OptimizerConfig::kConstant) return o.lr;
  const double span = static_cast<double>(std::max<int64_t>(1, total - o.warmup));
  const double progress = static_cast<double>(k - o.warmup) / span;
  double factor;
  if (o.schedule == OptimizerConfig::kLinear) factor = std::max(0.0, 1.0 - progress);
  else factor = std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * progress)));
  return o.min_lr + (o.lr - o.min_lr) * factor;
}

// torch.nn.utils.clip_grad_norm_: gradients are multiplied by min(1, max_norm / (norm + 1e-6)).
inline double clip_coefficient(double max_norm, double total_norm) {
  if (max_norm <= 0) return 1.0;
  return std::min(1.0, max_norm / (total_norm + 1e-6));
}

// One update of n parameters. t is the 1-based step count (AdamW's bias correction).
// m, v: AdamW moments, or m: SGD momentum buffer.
inline void optimizer_update(const OptimizerConfig& o, float* p, const float* g, float* m, float* v, int64_t n, double lr, int64_t t,
                             double grad_scale) {
  if (o.kind == OptimizerConfig::kAdamW) {
    const double bc1 = 1.0 - std::pow(o.beta1, static_cast<double>(t));
    const double bc2_sqrt = std::sqrt(1.0 - std::pow(o.beta2, static_cast<double>(t)));
    const float step_size = static_cast<float>(lr / bc1);
    const float decay = static_cast<float>(1.0 - lr * o.weight_decay);
    const float b1 = static_cast<float>(o.beta1), b2 = static_cast<float>(o.beta2);
    const float eps = static_cast<float>(o.eps), bc2s = static_cast<float>(bc2_sqrt), gs = static_cast<float>(grad_scale);
    for (int64_t i = 0; i < n; i++) {
      const float gi = g[i] * gs;
      p[i] *= decay;
      m[i] = b1 * m[i] + (1.0f - b1) * gi;
      v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
      const float denom = std::sqrt(v[i]) / bc2s + eps;
      p[i] -= step_size * (m[i] / denom);
    }
    return;
  }
  const float wd = static_cast<float>(o.weight_decay), mom = static_cast<float>(o.momentum), lrf = static_cast<float>(lr);
  const float gs = static_cast<float>(grad_scale);
  for (int64_t i = 0; i < n; i++) {
    float gi = g[i] * gs;
    if (wd != 0) gi += wd * p[i];
    if (mom != 0) {
      m[i] = t == 1 ? gi : mom * m[i] + gi;
      gi = m[i];
    }
    p[i] -= lrf * gi;
  }
}

}  // namespace loraflow
