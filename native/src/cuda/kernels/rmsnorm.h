// rmsnorm.h: RMSNorm forward and backward, one block per row. Hugging Face computes the norm in
// fp32, casts it to the input dtype, then multiplies by the weight in that dtype: so does this.
#pragma once
#include "cuda/bf16.h"
#include "cuda/phase.h"

namespace loraflow::cuda {

// y[rows, C] = w[C] * round(x * rstd); rstd[rows] = 1 / sqrt(mean(x^2) + eps).
template <typename T>
struct RmsnormForward : RowSumShape {
  struct Params {
    T* y;        // [rows, C]
    float* rstd; // [rows]
    const T* x;  // [rows, C]
    const T* w;  // [C]
    int64_t rows, C;
    float eps;
  };
  static Dim3 grid(const Params& p) { return {static_cast<unsigned>(p.rows), 1, 1}; }

  LF_HD static void run(int phase, const Params& p, Shared& sh, Thread&, const At& at) {
    const int64_t row = at.block.x;
    const T* x = p.x + row * p.C;
    if (phase == 0) {
      float s = 0;
      for (int64_t i = at.thread; i < p.C; i += kThreads) s += to_float(x[i]) * to_float(x[i]);
      sh.sum[at.thread] = s;
    } else if (phase <= kSteps) {
      tree_sum_step(sh.sum, kThreads, phase - 1, at.thread);
    } else {
      const float r = 1.0f / sqrtf(sh.sum[0] / static_cast<float>(p.C) + p.eps);
      if (at.thread == 0) p.rstd[row] = r;
      T* y = p.y + row * p.C;
      for (int64_t i = at.thread; i < p.C; i += kThreads) y[i] = from_float<T>(to_float(p.w[i]) * round_to<T>(to_float(x[i]) * r));
    }
  }
};

// dx[rows, C] += w * dy * rstd - (sum_i w_i dy_i x_i) * rstd^3 / C * x.
template <typename T>
struct RmsnormBackward : RowSumShape {
  struct Params {
    T* dx;             // [rows, C]
    const T* dy;       // [rows, C]
    const T* x;        // [rows, C]
    const T* w;        // [C]
    const float* rstd; // [rows]
    int64_t rows, C;
  };
  static Dim3 grid(const Params& p) { return {static_cast<unsigned>(p.rows), 1, 1}; }

  LF_HD static void run(int phase, const Params& p, Shared& sh, Thread&, const At& at) {
    const int64_t row = at.block.x;
    const T* x = p.x + row * p.C;
    const T* dy = p.dy + row * p.C;
    if (phase == 0) {
      float s = 0;
      for (int64_t i = at.thread; i < p.C; i += kThreads) s += to_float(p.w[i]) * to_float(dy[i]) * to_float(x[i]);
      sh.sum[at.thread] = s;
    } else if (phase <= kSteps) {
      tree_sum_step(sh.sum, kThreads, phase - 1, at.thread);
    } else {
      const float r = p.rstd[row];
      const float k = sh.sum[0] * r * r * r / static_cast<float>(p.C);
      T* dx = p.dx + row * p.C;
      for (int64_t i = at.thread; i < p.C; i += kThreads) {
        dx[i] = from_float<T>(to_float(dx[i]) + (to_float(p.w[i]) * to_float(dy[i]) * r - k * to_float(x[i])));
      }
    }
  }
};

}  // namespace loraflow::cuda
