// lora.h: one adapter's LoRA branch on its rows of a (possibly fused) micro-batch:
//   y[n, out] += s * dropout(x)[n, in] A^T[in, r] B^T[r, out]
// The caller runs the frozen base GEMM once over all adapters' rows, then this per adapter on
// its own row segment (mLoRA's BatchLoRA). Gradients are exact, the dropout mask included:
//   u = dropout(x) A^T,  G = s * dY B,  dB += s * dY^T u,  dA += G^T dropout(x),  dX += (G A) * mask / (1 - p).
#pragma once
#include <cstdint>
#include <vector>

#include "cpu/gemm.h"
#include "model/dropout.h"

namespace loraflow::ops {

struct LoraSite {
  int64_t in = 0, out = 0, rank = 0;
  double scale = 1;    // alpha / r, or alpha / sqrt(r) with rsLoRA
  double dropout = 0;  // probability of zeroing an input element
  uint64_t module_key = 0;
};

// h[n, in] = x with the dropout mask applied (x itself when p = 0).
template <typename S>
void lora_dropout(S* h, const S* x, const uint64_t* row_keys, int64_t n, const LoraSite& site) {
  const S keep_scale = S(1) / S(1 - site.dropout);
  for (int64_t i = 0; i < n; i++) {
    for (int64_t c = 0; c < site.in; c++) {
      const bool keep = site.dropout == 0 || dropout_keep(row_keys[i], site.module_key, static_cast<uint64_t>(c), site.dropout);
      h[i * site.in + c] = keep ? x[i * site.in + c] * keep_scale : S(0);
    }
  }
}

// u[n, r] = dropout(x) A^T (stashed for backward). h: scratch [n, in] for the masked input
// (unused when p = 0).
template <typename S>
void lora_shrink(S* u, const S* x, const S* A, const uint64_t* row_keys, int64_t n, const LoraSite& site, S* h) {
  const S* in = x;
  if (site.dropout != 0) {
    lora_dropout(h, x, row_keys, n, site);
    in = h;
  }
  gemm<S>(false, true, n, site.rank, site.in, S(1), in, site.in, A, site.in, S(0), u, site.rank);
}

// y[n, out] += s * u B^T.
template <typename S>
void lora_expand(S* y, const S* u, const S* B, int64_t n, const LoraSite& site) {
  gemm<S>(false, true, n, site.out, site.rank, S(site.scale), u, site.rank, B, site.rank, S(1), y, site.out);
}

// Accumulates dA[r, in], dB[out, r] and (when dx is given) dx[n, in]. Scratch: G [n, r]; with
// dropout, h and dh [n, in] each (dh only when dx is given).
template <typename S>
void lora_backward(S* dx, S* dA, S* dB, const S* dy, const S* x, const S* u, const S* A, const S* B, const uint64_t* row_keys,
                   int64_t n, const LoraSite& site, S* G, S* h, S* dh) {
  const S s = S(site.scale);
  // dB += s * dY^T u
  gemm<S>(true, false, site.out, site.rank, n, s, dy, site.out, u, site.rank, S(1), dB, site.rank);
  // G[n, r] = s * dY B
  gemm<S>(false, false, n, site.rank, site.out, s, dy, site.out, B, site.rank, S(0), G, site.rank);
  const S* in = x;
  if (site.dropout != 0) {
    lora_dropout(h, x, row_keys, n, site);
    in = h;
  }
  // dA += G^T h
  gemm<S>(true, false, site.rank, site.in, n, S(1), G, site.rank, in, site.in, S(1), dA, site.in);
  if (!dx) return;
  if (site.dropout == 0) {
    gemm<S>(false, false, n, site.in, site.rank, S(1), G, site.rank, A, site.in, S(1), dx, site.in);
    return;
  }
  // dh = G A, then through the mask (in place): dx += dh * mask / (1 - p).
  gemm<S>(false, false, n, site.in, site.rank, S(1), G, site.rank, A, site.in, S(0), dh, site.in);
  lora_dropout(dh, dh, row_keys, n, site);
  for (int64_t i = 0; i < n * site.in; i++) dx[i] += dh[i];
}

// The same, with their scratch allocated here (the operator tests and the reference).
template <typename S>
void lora_forward(S* y, S* u, const S* x, const S* A, const S* B, const uint64_t* row_keys, int64_t n, const LoraSite& site) {
  std::vector<S> h(site.dropout != 0 ? static_cast<size_t>(n * site.in) : 0);
  lora_shrink(u, x, A, row_keys, n, site, h.data());
  lora_expand(y, u, B, n, site);
}

template <typename S>
void lora_backward(S* dx, S* dA, S* dB, const S* dy, const S* x, const S* u, const S* A, const S* B, const uint64_t* row_keys,
                   int64_t n, const LoraSite& site) {
  std::vector<S> G(static_cast<size_t>(n * site.rank));
  std::vector<S> h(site.dropout != 0 ? static_cast<size_t>(n * site.in) : 0), dh(site.dropout != 0 && dx ? static_cast<size_t>(n * site.in) : 0);
  lora_backward(dx, dA, dB, dy, x, u, A, B, row_keys, n, site, G.data(), h.data(), dh.data());
}

}  // namespace loraflow::ops
