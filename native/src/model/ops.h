// ops.h: the Llama operators, forward and backward, on row-major buffers of T tokens, templated
// on the scalar so the same code runs in float (training) and double (gradient checks).
// Numerics follow Hugging Face transformers' LlamaModel: RMSNorm over the last axis, RoPE with
// the half-split pairing (rotate_half), causal GQA attention with softmax in the working
// precision, SwiGLU. The base weights are frozen: no op computes a base weight gradient.
// Backward functions ACCUMULATE into their input gradients (+=), so residual branches add up.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "cpu/gemm.h"

namespace loraflow::ops {

// out[T, C] = rows of wte[V, C] picked by tokens[T].
template <typename S>
void embedding_forward(S* out, const int32_t* tokens, const S* wte, int64_t T, int64_t C) {
  for (int64_t t = 0; t < T; t++) std::copy(wte + int64_t(tokens[t]) * C, wte + (int64_t(tokens[t]) + 1) * C, out + t * C);
}

// out[T, C] = weight[C] * x / sqrt(mean(x^2) + eps); rstd[T] kept for backward.
template <typename S>
void rmsnorm_forward(S* out, S* rstd, const S* x, const S* weight, int64_t T, int64_t C, double eps) {
  for (int64_t t = 0; t < T; t++) {
    const S* xt = x + t * C;
    S ss = 0;
    for (int64_t i = 0; i < C; i++) ss += xt[i] * xt[i];
    const S r = S(1) / std::sqrt(ss / S(C) + S(eps));
    rstd[t] = r;
    S* ot = out + t * C;
    for (int64_t i = 0; i < C; i++) ot[i] = weight[i] * (xt[i] * r);
  }
}

// dx[T, C] += d(out)/dx applied to dout[T, C].
template <typename S>
void rmsnorm_backward(S* dx, const S* dout, const S* x, const S* weight, const S* rstd, int64_t T, int64_t C) {
  for (int64_t t = 0; t < T; t++) {
    const S* xt = x + t * C;
    const S* dt = dout + t * C;
    const S r = rstd[t];
    S dot = 0;  // sum_i weight_i * dout_i * x_i
    for (int64_t i = 0; i < C; i++) dot += weight[i] * dt[i] * xt[i];
    const S k = dot * r * r * r / S(C);
    S* dxt = dx + t * C;
    for (int64_t i = 0; i < C; i++) dxt[i] += weight[i] * dt[i] * r - k * xt[i];
  }
}

// inv_freq[hd/2] as Hugging Face computes it: 1 / theta^(2i / hd), in float.
inline std::vector<float> rope_inv_freq(int64_t head_dim, double theta) {
  std::vector<float> f(static_cast<size_t>(head_dim / 2));
  for (int64_t i = 0; i < head_dim / 2; i++) {
    f[static_cast<size_t>(i)] = 1.0f / std::pow(static_cast<float>(theta), static_cast<float>(2 * i) / static_cast<float>(head_dim));
  }
  return f;
}

// In place on x[T, heads * hd]: each head's element i pairs with i + hd/2, rotated by pos[t] * inv_freq[i].
// `inverse` applies the transpose rotation (the backward of the forward rotation).
template <typename S>
void rope_apply(S* x, const int32_t* pos, const float* inv_freq, int64_t T, int64_t heads, int64_t hd, bool inverse) {
  const int64_t half = hd / 2;
  for (int64_t t = 0; t < T; t++) {
    for (int64_t i = 0; i < half; i++) {
      // The angle in float as Hugging Face computes it (position_ids.float() @ inv_freq), its
      // cosine and sine in the working precision.
      const S angle = static_cast<S>(static_cast<float>(pos[t]) * inv_freq[i]);
      const S c = std::cos(angle);
      const S s = inverse ? -std::sin(angle) : std::sin(angle);
      for (int64_t h = 0; h < heads; h++) {
        S* v = x + t * heads * hd + h * hd;
        const S a = v[i], b = v[i + half];
        v[i] = a * c - b * s;
        v[i + half] = b * c + a * s;
      }
    }
  }
}

// Causal attention within packed segments: row t attends to rows [seg_start[t], t].
// q[T, H*hd], k/v[T, KV*hd] -> out[T, H*hd]; lse[T, H] (log-sum-exp of the scaled scores) kept
// so backward recomputes probabilities instead of storing [T, T] per head.
template <typename S>
void attention_forward(S* out, S* lse, const S* q, const S* k, const S* v, const int32_t* seg_start, int64_t T,
                       int64_t H, int64_t KV, int64_t hd) {
  const S scale = S(1) / std::sqrt(S(hd));
  const int64_t group = H / KV;
  std::vector<S> p(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; t++) {
    const int64_t s0 = seg_start[t];
    for (int64_t h = 0; h < H; h++) {
      const S* qt = q + t * H * hd + h * hd;
      const int64_t g = h / group;
      S m = -INFINITY;
      for (int64_t j = s0; j <= t; j++) {
        const S* kj = k + j * KV * hd + g * hd;
        S dot = 0;
        for (int64_t d = 0; d < hd; d++) dot += qt[d] * kj[d];
        p[j - s0] = dot * scale;
        m = std::max(m, p[j - s0]);
      }
      S sum = 0;
      for (int64_t j = s0; j <= t; j++) sum += (p[j - s0] = std::exp(p[j - s0] - m));
      S* ot = out + t * H * hd + h * hd;
      std::fill(ot, ot + hd, S(0));
      for (int64_t j = s0; j <= t; j++) {
        const S w = p[j - s0] / sum;
        const S* vj = v + j * KV * hd + g * hd;
        for (int64_t d = 0; d < hd; d++) ot[d] += w * vj[d];
      }
      lse[t * H + h] = m + std::log(sum);
    }
  }
}

template <typename S>
void attention_backward(S* dq, S* dk, S* dv, const S* dout, const S* out, const S* lse, const S* q, const S* k, const S* v,
                        const int32_t* seg_start, int64_t T, int64_t H, int64_t KV, int64_t hd) {
  const S scale = S(1) / std::sqrt(S(hd));
  const int64_t group = H / KV;
  for (int64_t t = 0; t < T; t++) {
    const int64_t s0 = seg_start[t];
    for (int64_t h = 0; h < H; h++) {
      const int64_t g = h / group;
      const S* qt = q + t * H * hd + h * hd;
      const S* dot_ = dout + t * H * hd + h * hd;
      const S* ot = out + t * H * hd + h * hd;
      S D = 0;
      for (int64_t d = 0; d < hd; d++) D += dot_[d] * ot[d];
      S* dqt = dq + t * H * hd + h * hd;
      for (int64_t j = s0; j <= t; j++) {
        const S* kj = k + j * KV * hd + g * hd;
        const S* vj = v + j * KV * hd + g * hd;
        S score = 0, dp = 0;
        for (int64_t d = 0; d < hd; d++) {
          score += qt[d] * kj[d];
          dp += dot_[d] * vj[d];
        }
        const S prob = std::exp(score * scale - lse[t * H + h]);
        const S ds = prob * (dp - D) * scale;
        S* dkj = dk + j * KV * hd + g * hd;
        S* dvj = dv + j * KV * hd + g * hd;
        for (int64_t d = 0; d < hd; d++) {
          dqt[d] += ds * kj[d];
          dkj[d] += ds * qt[d];
          dvj[d] += prob * dot_[d];
        }
      }
    }
  }
}

template <typename S>
inline S sigmoid(S x) {
  return S(1) / (S(1) + std::exp(-x));
}

// out[T, F] = silu(gate) * up.
template <typename S>
void swiglu_forward(S* out, const S* gate, const S* up, int64_t n) {
  for (int64_t i = 0; i < n; i++) out[i] = gate[i] * sigmoid(gate[i]) * up[i];
}

template <typename S>
void swiglu_backward(S* dgate, S* dup, const S* dout, const S* gate, const S* up, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    const S sg = sigmoid(gate[i]);
    const S silu = gate[i] * sg;
    dgate[i] += dout[i] * up[i] * sg * (S(1) + gate[i] * (S(1) - sg));
    dup[i] += dout[i] * silu;
  }
}

// Cross-entropy of logits[T, V] against targets[T] (-100: not counted). Returns the SUM of the
// counted losses; when dlogits is given, writes (softmax - onehot) * grad_scale for counted rows
// and 0 for the others (grad_scale is 1 / counted tokens of the whole optimizer step).
template <typename S>
double cross_entropy(S* dlogits, const S* logits, const int32_t* targets, int64_t T, int64_t V, S grad_scale) {
  double total = 0;
  for (int64_t t = 0; t < T; t++) {
    const S* lt = logits + t * V;
    S* dt = dlogits ? dlogits + t * V : nullptr;
    if (targets[t] < 0) {
      if (dt) std::fill(dt, dt + V, S(0));
      continue;
    }
    S m = -INFINITY;
    for (int64_t i = 0; i < V; i++) m = std::max(m, lt[i]);
    S sum = 0;
    for (int64_t i = 0; i < V; i++) sum += std::exp(lt[i] - m);
    const S logz = m + std::log(sum);
    total += static_cast<double>(logz - lt[targets[t]]);
    if (dt) {
      for (int64_t i = 0; i < V; i++) dt[i] = std::exp(lt[i] - logz) * grad_scale;
      dt[targets[t]] -= grad_scale;
    }
  }
  return total;
}

// y[T, OC] (= or +=) x[T, C] W^T for a frozen W[OC, C], the layout of Hugging Face's weights.
template <typename S>
void linear_forward(S* y, const S* x, const S* W, int64_t T, int64_t C, int64_t OC, bool accumulate) {
  gemm<S>(false, true, T, OC, C, S(1), x, C, W, C, accumulate ? S(1) : S(0), y, OC);
}

// dx[T, C] += dy[T, OC] W.
template <typename S>
void linear_backward_input(S* dx, const S* dy, const S* W, int64_t T, int64_t C, int64_t OC) {
  gemm<S>(false, false, T, C, OC, S(1), dy, OC, W, C, S(1), dx, C);
}

}  // namespace loraflow::ops
