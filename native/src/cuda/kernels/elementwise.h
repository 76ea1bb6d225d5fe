// elementwise.h: the programs' copies, sums and fills, one grid-stride phase each.
#pragma once
#include "cuda/bf16.h"
#include "cuda/phase.h"

namespace loraflow::cuda {

// What an elementwise op does with one element: out = in0 (copy), out += in0 (accumulate),
// out = 0 (zero), out = in0 + in1 (add).
enum class Elementwise { kCopy, kAccumulate, kZero, kAdd };

template <typename T, Elementwise kOp>
struct ElementwiseKernel : KernelShape<256, 1> {
  struct Params {
    T* out;        // [n]
    const T* in0;  // [n] (unused by kZero)
    const T* in1;  // [n] (kAdd only)
    int64_t n;
  };
  static Dim3 grid(const Params& p) { return stride_grid(p.n, kThreads); }

  LF_HD static void run(int, const Params& p, Shared&, Thread&, const At& at) {
    for (int64_t i = stride_first(at, kThreads); i < p.n; i += stride_step(at, kThreads)) {
      if (kOp == Elementwise::kCopy) p.out[i] = p.in0[i];
      if (kOp == Elementwise::kAccumulate) p.out[i] = from_float<T>(to_float(p.out[i]) + to_float(p.in0[i]));
      if (kOp == Elementwise::kZero) p.out[i] = from_float<T>(0.0f);
      if (kOp == Elementwise::kAdd) p.out[i] = from_float<T>(to_float(p.in0[i]) + to_float(p.in1[i]));
    }
  }
};

// out[rows, C] = wte[tokens[t], :]; a token outside the vocabulary gives a row of zeros (the
// runtime refuses such data before it gets here; the kernel still reads nothing out of bounds).
template <typename T>
struct EmbeddingKernel : KernelShape<256, 1> {
  struct Params {
    T* out;                // [rows, C]
    const T* wte;          // [V, C]
    const int32_t* tokens; // [rows]
    int64_t rows, C, V;
  };
  static Dim3 grid(const Params& p) { return {static_cast<unsigned>(p.rows), 1, 1}; }

  LF_HD static void run(int, const Params& p, Shared&, Thread&, const At& at) {
    const int64_t row = at.block.x;
    const int64_t tok = p.tokens[row];
    T* out = p.out + row * p.C;
    for (int64_t i = at.thread; i < p.C; i += kThreads) out[i] = tok >= 0 && tok < p.V ? p.wte[tok * p.C + i] : from_float<T>(0.0f);
  }
};

// out = silu(gate) * up over n elements, rounded where PyTorch rounds (silu's result, then the product).
template <typename T>
struct SwigluForward : KernelShape<256, 1> {
  struct Params {
    T* out;         // [n]
    const T* gate;  // [n]
    const T* up;    // [n]
    int64_t n;
  };
  static Dim3 grid(const Params& p) { return stride_grid(p.n, kThreads); }

  LF_HD static void run(int, const Params& p, Shared&, Thread&, const At& at) {
    for (int64_t i = stride_first(at, kThreads); i < p.n; i += stride_step(at, kThreads)) {
      const float g = to_float(p.gate[i]);
      const float silu = round_to<T>(g / (1.0f + expf(-g)));
      p.out[i] = from_float<T>(silu * to_float(p.up[i]));
    }
  }
};

// dgate += dout * up * sigmoid(g) * (1 + g * (1 - sigmoid(g))); dup += dout * silu(g).
template <typename T>
struct SwigluBackward : KernelShape<256, 1> {
  struct Params {
    T* dgate;       // [n]
    T* dup;         // [n]
    const T* dout;  // [n]
    const T* gate;  // [n]
    const T* up;    // [n]
    int64_t n;
  };
  static Dim3 grid(const Params& p) { return stride_grid(p.n, kThreads); }

  LF_HD static void run(int, const Params& p, Shared&, Thread&, const At& at) {
    for (int64_t i = stride_first(at, kThreads); i < p.n; i += stride_step(at, kThreads)) {
      const float g = to_float(p.gate[i]), u = to_float(p.up[i]), d = to_float(p.dout[i]);
      const float sg = 1.0f / (1.0f + expf(-g));
      p.dgate[i] = from_float<T>(to_float(p.dgate[i]) + d * u * sg * (1.0f + g * (1.0f - sg)));
      p.dup[i] = from_float<T>(to_float(p.dup[i]) + d * (g * sg));
    }
  }
};

// RoPE in place on x[rows, heads * hd], the half-split pairing: element i of a head with i + hd/2,
// rotated by pos[t] * inv_freq[i]. Hugging Face casts cos and sin to the activations' dtype and
// rounds each product and the sum; `inverse` applies the transpose (the backward).
template <typename T>
struct RopeKernel : KernelShape<128, 1> {
  struct Params {
    T* x;                   // [rows, heads * hd]
    const int32_t* pos;     // [rows]
    const float* inv_freq;  // [hd / 2]
    int64_t rows, heads, hd;
    bool inverse;
  };
  static Dim3 grid(const Params& p) { return {static_cast<unsigned>(p.rows), 1, 1}; }

  LF_HD static void run(int, const Params& p, Shared&, Thread&, const At& at) {
    const int64_t row = at.block.x, half = p.hd / 2;
    T* xr = p.x + row * p.heads * p.hd;
    for (int64_t j = at.thread; j < p.heads * half; j += kThreads) {
      const int64_t h = j / half, i = j % half;
      const float angle = static_cast<float>(p.pos[row]) * p.inv_freq[i];
      const float c = round_to<T>(cosf(angle));
      const float s = round_to<T>(p.inverse ? -sinf(angle) : sinf(angle));
      T* v = xr + h * p.hd;
      const float a = to_float(v[i]), b = to_float(v[i + half]);
      v[i] = from_float<T>(round_to<T>(a * c) - round_to<T>(b * s));
      v[i + half] = from_float<T>(round_to<T>(b * c) + round_to<T>(a * s));
    }
  }
};

}  // namespace loraflow::cuda
