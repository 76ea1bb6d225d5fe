// attention.h: causal GQA attention over packed examples, forward and backward (model/ops.h's
// attention_forward and attention_backward): row t of head h attends to the rows of its own
// example up to itself, keys and values from kv head h / (H / KV). No [T, T] scores exist: the
// forward is one block per (row, head) with an online softmax over 128 keys at a time, keeping
// each row's log-sum-exp; the backward recomputes probabilities from it. dq is one block per
// (row, head), dk and dv one per (row, kv head) summing over the rows and heads that see it, so
// every sum has one order and no atomics. Blocks are 128 threads and head_dim at most 128:
// thread d owns output dimension d. This is the plain tiled form; a tensor-core kernel may
// replace it without changing the contract.
#pragma once
#include <cmath>

#include "cuda/bf16.h"
#include "cuda/phase.h"

namespace loraflow::cuda {

constexpr int kAttentionThreads = 128;
constexpr int kAttentionSteps = log2_of(kAttentionThreads);

struct AttentionShape {
  int64_t T = 0, H = 0, KV = 0, hd = 0;
  int64_t longest = 0;               // rows of the longest example (bounds every loop)
  const int32_t* seg_start = nullptr;  // [T] first row of each row's example
  const int32_t* seg_end = nullptr;    // [T] one past its last row (backward)
  LF_HD int64_t group() const { return H / KV; }
  LF_HD float scale() const { return 1.0f / sqrtf(static_cast<float>(hd)); }
  LF_HD int64_t chunks(int64_t items) const { return (items + kAttentionThreads - 1) / kAttentionThreads; }
};

template <typename T>
LF_HD inline float dot(const float* a, const T* b, int64_t n) {
  float s = 0;
  for (int64_t d = 0; d < n; d++) s += a[d] * to_float(b[d]);
  return s;
}

template <typename T>
struct AttentionForward : KernelShape<kAttentionThreads, 0> {
  static constexpr int kPerChunk = 2 * kAttentionSteps + 3;  // scores | max | probabilities | sum | values
  struct Params {
    T* out;       // [T, H * hd]
    float* lse;   // [T, H]
    const T *q, *k, *v;  // [T, H * hd], [T, KV * hd] twice
    AttentionShape s;
  };
  struct Shared {
    float q[kThreads];
    float p[kThreads];    // scores, then probabilities, of the chunk's keys
    float max[kThreads];
    float sum[kThreads];
  };
  struct Thread {
    float m, l, alpha, o;
  };
  LF_HD static int phases(const Params& p) { return static_cast<int>(1 + p.s.chunks(p.s.longest) * kPerChunk + 1); }
  static Dim3 grid(const Params& p) { return {static_cast<unsigned>(p.s.T), static_cast<unsigned>(p.s.H), 1}; }

  LF_HD static void run(int phase, const Params& p, Shared& sh, Thread& th, const At& at) {
    const AttentionShape& s = p.s;
    const int64_t t = at.block.x, h = at.block.y, g = h / s.group(), i = at.thread;
    const int64_t qs = s.H * s.hd, ks = s.KV * s.hd, first = s.seg_start[t];
    if (phase == 0) {
      sh.q[i] = i < s.hd ? to_float(p.q[t * qs + h * s.hd + i]) : 0.0f;
      th.m = -INFINITY, th.l = 0, th.o = 0, th.alpha = 0;
      return;
    }
    if (phase == phases(p) - 1) {
      if (i < s.hd) p.out[t * qs + h * s.hd + i] = from_float<T>(th.o / th.l);
      if (i == 0) p.lse[t * s.H + h] = th.m + logf(th.l);
      return;
    }
    const int64_t c = (phase - 1) / kPerChunk, k = (phase - 1) % kPerChunk;
    const int64_t key = first + c * kThreads + i;  // this thread's key in the chunk
    const bool valid = key <= t;
    if (k == 0) {
      const float score = valid ? s.scale() * dot(sh.q, p.k + key * ks + g * s.hd, s.hd) : -INFINITY;
      sh.p[i] = score;
      sh.max[i] = score;
    } else if (k <= kAttentionSteps) {
      tree_max_step(sh.max, kThreads, static_cast<int>(k - 1), at.thread);
    } else if (k == kAttentionSteps + 1) {
      const float m = sh.max[0] > th.m ? sh.max[0] : th.m;
      th.alpha = th.m == -INFINITY ? 0.0f : expf(th.m - m);
      th.m = m;
      const float prob = valid ? expf(sh.p[i] - m) : 0.0f;
      sh.p[i] = prob;
      sh.sum[i] = prob;
    } else if (k <= 2 * kAttentionSteps + 1) {
      tree_sum_step(sh.sum, kThreads, static_cast<int>(k - kAttentionSteps - 2), at.thread);
    } else {
      th.l = th.l * th.alpha + sh.sum[0];
      if (i >= s.hd) return;
      float acc = th.o * th.alpha;
      for (int64_t j = 0; j < kThreads; j++) {
        const int64_t kj = first + c * kThreads + j;
        if (kj > t) break;
        acc += sh.p[j] * to_float(p.v[kj * ks + g * s.hd + i]);
      }
      th.o = acc;
    }
  }
};

// D[t, h] = dout . out, the softmax backward's row term, one thread per (row, head).
template <typename T>
struct AttentionRowDot : KernelShape<256, 1> {
  struct Params {
    float* D;  // [T, H]
    const T *dout, *out;  // [T, H * hd]
    AttentionShape s;
  };
  static Dim3 grid(const Params& p) { return stride_grid(p.s.T * p.s.H, kThreads); }
  LF_HD static void run(int, const Params& p, Shared&, Thread&, const At& at) {
    for (int64_t x = stride_first(at, kThreads); x < p.s.T * p.s.H; x += stride_step(at, kThreads)) {
      float acc = 0;
      for (int64_t d = 0; d < p.s.hd; d++) acc += to_float(p.dout[x * p.s.hd + d]) * to_float(p.out[x * p.s.hd + d]);
      p.D[x] = acc;
    }
  }
};

// The backward's probabilities and score gradients of one (query row, head, key).
template <typename T>
LF_HD inline void score_gradient(const float* q, const float* dout, const T* k, const T* v, float lse, float D, float scale, int64_t hd, float& prob, float& ds) {
  prob = expf(scale * dot(q, k, hd) - lse);
  ds = prob * (dot(dout, v, hd) - D) * scale;
}

// dq[t, h] += sum over its keys j of ds_j k_j.
template <typename T>
struct AttentionBackwardQuery : KernelShape<kAttentionThreads, 0> {
  struct Params {
    T* dq;  // [T, H * hd]
    const T *dout, *q, *k, *v;
    const float *lse, *D;  // [T, H]
    AttentionShape s;
  };
  struct Shared {
    float q[kThreads], dout[kThreads], ds[kThreads];
  };
  struct Thread {
    float acc;
  };
  LF_HD static int phases(const Params& p) { return static_cast<int>(1 + 2 * p.s.chunks(p.s.longest) + 1); }
  static Dim3 grid(const Params& p) { return {static_cast<unsigned>(p.s.T), static_cast<unsigned>(p.s.H), 1}; }

  LF_HD static void run(int phase, const Params& p, Shared& sh, Thread& th, const At& at) {
    const AttentionShape& s = p.s;
    const int64_t t = at.block.x, h = at.block.y, g = h / s.group(), i = at.thread;
    const int64_t qs = s.H * s.hd, ks = s.KV * s.hd, first = s.seg_start[t];
    if (phase == 0) {
      sh.q[i] = i < s.hd ? to_float(p.q[t * qs + h * s.hd + i]) : 0.0f;
      sh.dout[i] = i < s.hd ? to_float(p.dout[t * qs + h * s.hd + i]) : 0.0f;
      th.acc = 0;
      return;
    }
    if (phase == phases(p) - 1) {
      T* dq = p.dq + t * qs + h * s.hd;
      if (i < s.hd) dq[i] = from_float<T>(to_float(dq[i]) + th.acc);
      return;
    }
    const int64_t c = (phase - 1) / 2;
    if ((phase - 1) % 2 == 0) {
      const int64_t key = first + c * kThreads + i;
      float prob = 0, ds = 0;
      if (key <= t) score_gradient(sh.q, sh.dout, p.k + key * ks + g * s.hd, p.v + key * ks + g * s.hd, p.lse[t * s.H + h], p.D[t * s.H + h], s.scale(), s.hd, prob, ds);
      sh.ds[i] = ds;
    } else if (i < s.hd) {
      for (int64_t j = 0; j < kThreads; j++) {
        const int64_t key = first + c * kThreads + j;
        if (key > t) break;
        th.acc += sh.ds[j] * to_float(p.k[key * ks + g * s.hd + i]);
      }
    }
  }
};

// dk[j, g] += sum of ds q and dv[j, g] += sum of prob dout, over the rows t >= j of j's example
// and the heads of kv head g.
template <typename T>
struct AttentionBackwardKeyValue : KernelShape<kAttentionThreads, 0> {
  struct Params {
    T *dk, *dv;  // [T, KV * hd]
    const T *dout, *q, *k, *v;
    const float *lse, *D;  // [T, H]
    AttentionShape s;
  };
  struct Shared {
    float k[kThreads], v[kThreads], prob[kThreads], ds[kThreads];
  };
  struct Thread {
    float dk, dv;
  };
  LF_HD static int phases(const Params& p) { return static_cast<int>(1 + 2 * p.s.chunks(p.s.longest * p.s.group()) + 1); }
  static Dim3 grid(const Params& p) { return {static_cast<unsigned>(p.s.T), static_cast<unsigned>(p.s.KV), 1}; }

  LF_HD static void run(int phase, const Params& p, Shared& sh, Thread& th, const At& at) {
    const AttentionShape& s = p.s;
    const int64_t j = at.block.x, g = at.block.y, i = at.thread, group = s.group();
    const int64_t qs = s.H * s.hd, ks = s.KV * s.hd, pairs = (s.seg_end[j] - j) * group;
    if (phase == 0) {
      sh.k[i] = i < s.hd ? to_float(p.k[j * ks + g * s.hd + i]) : 0.0f;
      sh.v[i] = i < s.hd ? to_float(p.v[j * ks + g * s.hd + i]) : 0.0f;
      th.dk = 0, th.dv = 0;
      return;
    }
    if (phase == phases(p) - 1) {
      if (i >= s.hd) return;
      T* dk = p.dk + j * ks + g * s.hd;
      T* dv = p.dv + j * ks + g * s.hd;
      dk[i] = from_float<T>(to_float(dk[i]) + th.dk);
      dv[i] = from_float<T>(to_float(dv[i]) + th.dv);
      return;
    }
    const int64_t c = (phase - 1) / 2;
    if ((phase - 1) % 2 == 0) {
      const int64_t x = c * kThreads + i;  // pair (row j + x / group, head g * group + x % group)
      float prob = 0, ds = 0;
      if (x < pairs) {
        const int64_t t = j + x / group, h = g * group + x % group;
        prob = expf(s.scale() * dot(sh.k, p.q + t * qs + h * s.hd, s.hd) - p.lse[t * s.H + h]);
        ds = prob * (dot(sh.v, p.dout + t * qs + h * s.hd, s.hd) - p.D[t * s.H + h]) * s.scale();
      }
      sh.prob[i] = prob;
      sh.ds[i] = ds;
    } else if (i < s.hd) {
      for (int64_t y = 0; y < kThreads; y++) {
        const int64_t x = c * kThreads + y;
        if (x >= pairs) break;
        const int64_t t = j + x / group, h = g * group + x % group;
        th.dv += sh.prob[y] * to_float(p.dout[t * qs + h * s.hd + i]);
        th.dk += sh.ds[y] * to_float(p.q[t * qs + h * s.hd + i]);
      }
    }
  }
};

}  // namespace loraflow::cuda
