// optimizer.h: per-adapter optimizers with PyTorch's semantics, learning-rate schedules with
// Hugging Face's (get_scheduler: step k of the run uses lambda(k), k from 0), and
// clip_grad_norm_'s clipping coefficient.
#pragma once
#include <cmath>
#include <cstdint>
#include <string>

#include "core/host_device.h"

namespace loraflow {

struct OptimizerConfig {
  enum Kind { kAdamW, kSgd } kind = kAdamW;
  double lr = 5e-5, weight_decay = 0, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, momentum = 0;
  int64_t warmup = 0;
  enum Schedule { kConstant, kConstantWithWarmup, kLinear, kCosine } schedule = kLinear;
  double min_lr = 0;
  double clip = 1.0;  // 0: no clipping
};

// The learning rate of 0-based step k of `total`, as transformers' get_scheduler: `constant` is
// lr throughout (its warm-up is ignored, as HF's get_constant_schedule does); the others warm up
// linearly from 0 over `warmup` steps, then stay at lr or decay linearly or by a half cosine to
// min_lr.
inline double learning_rate(const OptimizerConfig& o, int64_t k, int64_t total) {
  if (o.schedule == OptimizerConfig::kConstant) return o.lr;
  if (k < o.warmup) return o.lr * static_cast<double>(k) / static_cast<double>(std::max<int64_t>(1, o.warmup));
  if (o.schedule == OptimizerConfig::kConstantWithWarmup) return o.lr;
  const double span = static_cast<double>(std::max<int64_t>(1, total - o.warmup));
  const double progress = static_cast<double>(k - o.warmup) / span;
  double factor;
  if (o.schedule == OptimizerConfig::kLinear) factor = std::max(0.0, 1.0 - progress);
  else factor = std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * progress)));
  return o.min_lr + (o.lr - o.min_lr) * factor;
}

// Moment buffers per parameter: AdamW two (exp_avg, exp_avg_sq), SGD with momentum one
// (momentum_buffer), plain SGD none (the count the plan's memory model uses).
inline int optimizer_moments(const OptimizerConfig& o) { return o.kind == OptimizerConfig::kAdamW ? 2 : o.momentum != 0 ? 1 : 0; }

// torch.nn.utils.clip_grad_norm_: gradients are multiplied by min(1, max_norm / (norm + 1e-6)).
inline double clip_coefficient(double max_norm, double total_norm) {
  if (max_norm <= 0) return 1.0;
  return std::min(1.0, max_norm / (total_norm + 1e-6));
}

// What one step applies to every parameter, computed once on the host in double and rounded to
// fp32 as optimizer_update always has; the CUDA kernel (cuda/kernels/optimizer.h) uses the same.
struct StepScalars {
  bool adamw = true;
  float gs = 1;                                                        // gradient scale (the clip)
  float step_size = 0, decay = 1, b1 = 0, b2 = 0, eps = 0, bc2s = 1;  // AdamW
  float lr = 0, wd = 0, momentum = 0;                                  // SGD
  bool first = false;                                                  // SGD: t == 1
};

inline StepScalars step_scalars(const OptimizerConfig& o, double lr, int64_t t, double grad_scale) {
  StepScalars s;
  s.adamw = o.kind == OptimizerConfig::kAdamW;
  s.gs = static_cast<float>(grad_scale);
  if (s.adamw) {
    const double bc1 = 1.0 - std::pow(o.beta1, static_cast<double>(t));
    const double bc2_sqrt = std::sqrt(1.0 - std::pow(o.beta2, static_cast<double>(t)));
    s.step_size = static_cast<float>(lr / bc1);
    s.decay = static_cast<float>(1.0 - lr * o.weight_decay);
    s.b1 = static_cast<float>(o.beta1);
    s.b2 = static_cast<float>(o.beta2);
    s.eps = static_cast<float>(o.eps);
    s.bc2s = static_cast<float>(bc2_sqrt);
  } else {
    s.wd = static_cast<float>(o.weight_decay);
    s.momentum = static_cast<float>(o.momentum);
    s.lr = static_cast<float>(lr);
    s.first = t == 1;
  }
  return s;
}

// One parameter's update; m, v: AdamW moments, or m: SGD momentum buffer.
LF_HD inline void update_parameter(const StepScalars& s, float& p, float g, float& m, float& v) {
  float gi = g * s.gs;
  if (s.adamw) {
    p *= s.decay;
    m = s.b1 * m + (1.0f - s.b1) * gi;
    v = s.b2 * v + (1.0f - s.b2) * gi * gi;
    const float denom = sqrtf(v) / s.bc2s + s.eps;
    p -= s.step_size * (m / denom);
    return;
  }
  if (s.wd != 0) gi += s.wd * p;
  if (s.momentum != 0) {
    m = s.first ? gi : s.momentum * m + gi;
    gi = m;
  }
  p -= s.lr * gi;
}

// One update of n parameters. t is the 1-based step count (AdamW's bias correction).
// m, v: AdamW moments, or m: SGD momentum buffer.
inline void optimizer_update(const OptimizerConfig& o, float* p, const float* g, float* m, float* v, int64_t n, double lr, int64_t t,
                             double grad_scale) {
  const StepScalars s = step_scalars(o, lr, t, grad_scale);
  float none = 0;
  for (int64_t i = 0; i < n; i++) update_parameter(s, p[i], g[i], m ? m[i] : none, v ? v[i] : none);
}

}  // namespace loraflow
