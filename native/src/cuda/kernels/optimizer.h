// optimizer.h: an adapter's optimizer step on a stage, every LoRA site in one launch, with
// train/optimizer.h's own per-parameter update (PyTorch's AdamW and SGD, in fp32, the step's
// scalars computed on the host in double), gradients zeroed behind; and each site's squared
// gradient norm (a stage's share of the clip), in double, one block per site.
#pragma once
#include "cuda/phase.h"
#include "train/optimizer.h"

namespace loraflow::cuda {

// One site's state: parameters [A | B], gradients [dA | dB], moments (AdamW two, SGD with
// momentum one, else none), n values each.
struct OptimizerSite {
  float* p = nullptr;
  float* g = nullptr;
  float* m = nullptr;
  float* v = nullptr;
  int64_t n = 0;
};

struct OptimizerKernel : KernelShape<256, 1> {
  struct Params {
    const OptimizerSite* sites;  // [count], device memory
    int count = 0;
    StepScalars s;
    int64_t longest = 0;  // the largest site's n (sizes the grid)
  };
  static Dim3 grid(const Params& p) { return {stride_grid(p.longest, kThreads).x, static_cast<unsigned>(p.count), 1}; }

  LF_HD static void run(int, const Params& p, Shared&, Thread&, const At& at) {
    const OptimizerSite& site = p.sites[at.block.y];
    float none = 0;
    for (int64_t i = stride_first(at, kThreads); i < site.n; i += stride_step(at, kThreads)) {
      update_parameter(p.s, site.p[i], site.g[i], site.m ? site.m[i] : none, site.v ? site.v[i] : none);
      site.g[i] = 0;
    }
  }
};

// out[i] = sum of squares of site i's gradients, in double.
struct SquaredNormKernel : KernelShape<256, 2 + log2_of(256)> {
  static constexpr int kSteps = log2_of(kThreads);
  struct Params {
    const OptimizerSite* sites;  // [count], device memory
    int count = 0;
    double* out = nullptr;       // [count]
  };
  struct Shared {
    double sum[kThreads];
  };
  static Dim3 grid(const Params& p) { return {static_cast<unsigned>(p.count), 1, 1}; }

  LF_HD static void run(int phase, const Params& p, Shared& sh, Thread&, const At& at) {
    const OptimizerSite& site = p.sites[at.block.x];
    if (phase == 0) {
      double s = 0;
      for (int64_t i = at.thread; i < site.n; i += kThreads) s += static_cast<double>(site.g[i]) * site.g[i];
      sh.sum[at.thread] = s;
    } else if (phase <= kSteps) {
      const int half = kThreads >> phase;
      if (at.thread < half) sh.sum[at.thread] += sh.sum[at.thread + half];
    } else if (at.thread == 0) {
      p.out[at.block.x] = sh.sum[0];
    }
  }
};

}  // namespace loraflow::cuda
