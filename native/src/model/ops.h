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
#include "model/llama_config.h"

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

// inv_freq with the config's RoPE scaling, in float as Hugging Face computes it
// (_compute_linear_scaling_rope_parameters, _compute_llama3_parameters): linear divides every
// frequency by the factor; llama3 divides the low frequencies (wavelength past
// original_max / low_freq_factor), keeps the high ones (wavelength below original_max /
// high_freq_factor), and blends between them.
inline std::vector<float> rope_inv_freq(const LlamaConfig& c) {
  std::vector<float> f = rope_inv_freq(c.head_dim, c.rope_theta);
  // Each step in float, as PyTorch runs them on a float32 tensor with Python scalars (the
  // scalars cast to float; `scalar / tensor` is `tensor.reciprocal() * scalar`).
  const float factor = static_cast<float>(c.rope_factor);
  if (c.rope_scaling == LlamaConfig::kLinear) {
    for (float& x : f) x = x / factor;
  } else if (c.rope_scaling == LlamaConfig::kLlama3) {
    const float low = static_cast<float>(c.rope_low_freq_factor), old_len = static_cast<float>(c.rope_original_max);
    const float span = static_cast<float>(c.rope_high_freq_factor - c.rope_low_freq_factor);
    const float low_wavelen = static_cast<float>(c.rope_original_max / c.rope_low_freq_factor);
    const float high_wavelen = static_cast<float>(c.rope_original_max / c.rope_high_freq_factor);
    const float two_pi = static_cast<float>(2 * M_PI);
    for (float& x : f) {
      const float wavelen = (1.0f / x) * two_pi;
      const float scaled = wavelen > low_wavelen ? x / factor : x;
      const float smooth = ((1.0f / wavelen) * old_len - low) / span;
      const float smoothed = ((1.0f - smooth) * scaled) / factor + smooth * scaled;
      const bool medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
      x = medium ? smoothed : scaled;
    }
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

// Attention works on blocks of rows that start at a packed example's first row and hold whole
// examples (up to kAttentionBlock rows, or one longer example): no row attends outside its
// block, so each block's scores are one GEMM per head, masked to the row's example.
constexpr int64_t kAttentionBlock = 256;

// Calls fn(b0, b1) for each block in row order (blocks of up to `block` rows, see above).
template <typename Fn>
void for_each_attention_block(const int32_t* seg_start, int64_t T, int64_t block, Fn&& fn) {
  int64_t b0 = 0;
  for (int64_t t = 1; t <= T; t++) {
    const bool starts_example = t == T || seg_start[t] == t;
    if (starts_example && (t == T || t - b0 >= block)) {
      fn(b0, t);
      b0 = t;
    }
  }
}

// The rows of the largest block (what the scores scratch must hold: its square).
inline int64_t largest_attention_block(const int32_t* seg_start, int64_t T, int64_t block) {
  int64_t n = 0;
  for_each_attention_block(seg_start, T, block, [&](int64_t b0, int64_t b1) { n = std::max(n, b1 - b0); });
  return n;
}

// Turns the scaled scores P[n, n] of a block starting at row b0 into probabilities: softmax over
// each row's visible columns [seg_start[t], t], zero elsewhere. Forward: lse_out gets each row's
// log-sum-exp (stride apart). Backward: lse_in gives it back, so P is recomputed exactly.
template <typename S>
void attention_probabilities(S* P, const int32_t* seg_start, int64_t b0, int64_t n, S* lse_out, const S* lse_in, int64_t stride) {
  for (int64_t i = 0; i < n; i++) {
    S* row = P + i * n;
    const int64_t j0 = seg_start[b0 + i] - b0, j1 = i;  // visible: [j0, j1]
    if (lse_out) {
      S m = -INFINITY;
      for (int64_t j = j0; j <= j1; j++) m = std::max(m, row[j]);
      S sum = 0;
      for (int64_t j = j0; j <= j1; j++) sum += (row[j] = std::exp(row[j] - m));
      const S inv = S(1) / sum;
      for (int64_t j = j0; j <= j1; j++) row[j] *= inv;
      lse_out[i * stride] = m + std::log(sum);
    } else {
      const S m = lse_in[i * stride];
      for (int64_t j = j0; j <= j1; j++) row[j] = std::exp(row[j] - m);
    }
    std::fill(row, row + j0, S(0));
    std::fill(row + j1 + 1, row + n, S(0));
  }
}

// Causal attention within packed segments: row t attends to rows [seg_start[t], t].
// q[T, H*hd], k/v[T, KV*hd] -> out[T, H*hd]; lse[T, H] (log-sum-exp of the scaled scores) kept
// so backward recomputes probabilities instead of storing [T, T] per head. GQA: head h reads
// key/value head h / (H / KV). P: scratch of the largest block's [n, n] scores.
template <typename S>
void attention_forward(S* out, S* lse, const S* q, const S* k, const S* v, const int32_t* seg_start, int64_t T,
                       int64_t H, int64_t KV, int64_t hd, S* P, int64_t block = kAttentionBlock) {
  const S scale = S(1) / std::sqrt(S(hd));
  const int64_t group = H / KV, qs = H * hd, ks = KV * hd;
  for_each_attention_block(seg_start, T, block, [&](int64_t b0, int64_t b1) {
    const int64_t n = b1 - b0;
    for (int64_t h = 0; h < H; h++) {
      const int64_t g = h / group;
      gemm<S>(false, true, n, n, hd, scale, q + b0 * qs + h * hd, qs, k + b0 * ks + g * hd, ks, S(0), P, n);
      attention_probabilities(P, seg_start, b0, n, lse + b0 * H + h, static_cast<const S*>(nullptr), H);
      gemm<S>(false, false, n, hd, n, S(1), P, n, v + b0 * ks + g * hd, ks, S(0), out + b0 * qs + h * hd, qs);
    }
  });
}

template <typename S>
void attention_forward(S* out, S* lse, const S* q, const S* k, const S* v, const int32_t* seg_start, int64_t T,
                       int64_t H, int64_t KV, int64_t hd) {
  const int64_t n = largest_attention_block(seg_start, T, kAttentionBlock);
  std::vector<S> P(static_cast<size_t>(n * n));
  attention_forward(out, lse, q, k, v, seg_start, T, H, KV, hd, P.data());
}

// dq, dk, dv accumulate (+=). dS = P * (dP - rowsum(dout * out)), dP = dout V^T.
// Scratch: P and dP of the largest block's [n, n], D [T, H].
template <typename S>
void attention_backward(S* dq, S* dk, S* dv, const S* dout, const S* out, const S* lse, const S* q, const S* k, const S* v,
                        const int32_t* seg_start, int64_t T, int64_t H, int64_t KV, int64_t hd, S* P, S* dP, S* D,
                        int64_t block = kAttentionBlock) {
  const S scale = S(1) / std::sqrt(S(hd));
  const int64_t group = H / KV, qs = H * hd, ks = KV * hd;
  // D[t, h] = dout . out, the softmax backward's row term.
  for (int64_t t = 0; t < T; t++) {
    for (int64_t h = 0; h < H; h++) {
      S acc = 0;
      for (int64_t d = 0; d < hd; d++) acc += dout[t * qs + h * hd + d] * out[t * qs + h * hd + d];
      D[t * H + h] = acc;
    }
  }
  for_each_attention_block(seg_start, T, block, [&](int64_t b0, int64_t b1) {
    const int64_t n = b1 - b0;
    for (int64_t h = 0; h < H; h++) {
      const int64_t g = h / group;
      const S* qh = q + b0 * qs + h * hd;
      const S* kg = k + b0 * ks + g * hd;
      const S* vg = v + b0 * ks + g * hd;
      const S* doh = dout + b0 * qs + h * hd;
      gemm<S>(false, true, n, n, hd, scale, qh, qs, kg, ks, S(0), P, n);
      attention_probabilities(P, seg_start, b0, n, static_cast<S*>(nullptr), lse + b0 * H + h, H);
      gemm<S>(false, true, n, n, hd, S(1), doh, qs, vg, ks, S(0), dP, n);
      for (int64_t i = 0; i < n; i++) {
        const S Di = D[(b0 + i) * H + h];
        for (int64_t j = 0; j < n; j++) dP[i * n + j] = P[i * n + j] * (dP[i * n + j] - Di) * scale;
      }
      // dP now holds dS (scaled): dq += dS K, dk += dS^T q, dv += P^T dout.
      gemm<S>(false, false, n, hd, n, S(1), dP, n, kg, ks, S(1), dq + b0 * qs + h * hd, qs);
      gemm<S>(true, false, n, hd, n, S(1), dP, n, qh, qs, S(1), dk + b0 * ks + g * hd, ks);
      gemm<S>(true, false, n, hd, n, S(1), P, n, doh, qs, S(1), dv + b0 * ks + g * hd, ks);
    }
  });
}

template <typename S>
void attention_backward(S* dq, S* dk, S* dv, const S* dout, const S* out, const S* lse, const S* q, const S* k, const S* v,
                        const int32_t* seg_start, int64_t T, int64_t H, int64_t KV, int64_t hd) {
  const int64_t n = largest_attention_block(seg_start, T, kAttentionBlock);
  std::vector<S> P(static_cast<size_t>(n * n)), dP(static_cast<size_t>(n * n)), D(static_cast<size_t>(T * H));
  attention_backward(dq, dk, dv, dout, out, lse, q, k, v, seg_start, T, H, KV, hd, P.data(), dP.data(), D.data());
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
