// cross_entropy.h: the loss of the head's chunk of rows and its gradient w.r.t. the logits, one
// block per row (model/ops.h cross_entropy): logits [rows, V] in fp32; for a counted row
//   loss = logsumexp(l) - l[target],  dl = softmax(l) * scale - onehot(target) * scale,
// and for a row whose target is -100 a loss of 0 and a gradient of 0. The gradient goes to its
// own buffer in the activations' type (Hugging Face rounds it there before the head's backward
// GEMM), or over the logits in place in fp32.
#pragma once
#include <cmath>

#include "cuda/bf16.h"
#include "cuda/phase.h"

namespace loraflow::cuda {

template <typename T>
struct CrossEntropyKernel : KernelShape<256, 2 * (log2_of(256) + 1) + 1> {
  static constexpr int kSteps = log2_of(kThreads);
  struct Params {
    const float* logits;    // [rows, V]
    T* dlogits;             // [rows, V] (may be `logits` itself when T is float)
    const int32_t* targets; // [rows]
    const float* scale;     // [rows]: 1 / counted tokens of the row's optimizer step
    float* loss;            // [rows]
    int64_t rows, V;
  };
  struct Shared {
    float max[kThreads];
    float sum[kThreads];
  };
  struct Thread {
    float m;   // the row's largest logit
    float lt;  // its target's logit, read before the gradient may overwrite it in place
  };
  static Dim3 grid(const Params& p) { return {static_cast<unsigned>(p.rows), 1, 1}; }

  LF_HD static void run(int phase, const Params& p, Shared& sh, Thread& th, const At& at) {
    const int64_t row = at.block.x;
    const float* l = p.logits + row * p.V;
    const int32_t target = p.targets[row];
    if (phase == 0) {
      float m = -INFINITY;
      for (int64_t i = at.thread; i < p.V; i += kThreads) m = l[i] > m ? l[i] : m;
      sh.max[at.thread] = m;
    } else if (phase <= kSteps) {
      tree_max_step(sh.max, kThreads, phase - 1, at.thread);
    } else if (phase == kSteps + 1) {
      th.m = sh.max[0];
      th.lt = target >= 0 ? l[target] : 0.0f;
      float s = 0;
      for (int64_t i = at.thread; i < p.V; i += kThreads) s += expf(l[i] - th.m);
      sh.sum[at.thread] = s;
    } else if (phase <= 2 * kSteps + 1) {
      tree_sum_step(sh.sum, kThreads, phase - kSteps - 2, at.thread);
    } else {
      T* dl = p.dlogits + row * p.V;
      if (target < 0) {
        if (at.thread == 0) p.loss[row] = 0;
        for (int64_t i = at.thread; i < p.V; i += kThreads) dl[i] = from_float<T>(0.0f);
        return;
      }
      const float logz = th.m + logf(sh.sum[0]);
      const float gs = p.scale[row];
      if (at.thread == 0) p.loss[row] = logz - th.lt;
      for (int64_t i = at.thread; i < p.V; i += kThreads) {
        float g = expf(l[i] - logz) * gs;
        if (i == target) g -= gs;
        dl[i] = from_float<T>(g);
      }
    }
  }
};

}  // namespace loraflow::cuda
