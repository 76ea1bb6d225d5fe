// segmented_gemm.h: the fused multi-adapter LoRA operator's engine (in the spirit of Punica's
// SGMV): one launch runs a small GEMM for every adapter's row segment of a micro-batch, each
// with its own weights, shapes and dropout mask:
//   C_i[M, N] = alpha_i * op(A_i)[M, K] op(B_i)[K, N] + beta_i * C_i   (beta 0: C unread)
// Operands are fp32 or bf16, read as fp32; sums are fp32 in k order, one rounding into C's type.
// The mask of LoRA dropout (model/dropout.h, the same bits as the CPU) multiplies A's elements
// (row m, column k), B's (row k, column n) or the result (row m, column n) by keep / (1 - p).
// Blocks compute 32 x 32 tiles of one segment; a launch is two phases per 32-deep slice of K
// (load the slices into shared memory, multiply them in) and a last one that stores.
#pragma once
#include "cuda/bf16.h"
#include "cuda/phase.h"
#include "model/dropout.h"

namespace loraflow::cuda {

enum class Storage : int { kF32 = 0, kBF16 };

// A matrix operand: element (r, c) of op(X) is X[r * ld + c], or X[c * ld + r] when transposed.
struct Operand {
  const void* data = nullptr;
  int64_t ld = 0;
  Storage type = Storage::kF32;
  bool transposed = false;

  LF_HD float at(int64_t r, int64_t c) const {
    const int64_t i = transposed ? c * ld + r : r * ld + c;
    return type == Storage::kBF16 ? to_float(static_cast<const bf16*>(data)[i]) : static_cast<const float*>(data)[i];
  }
};

enum class MaskOn : int { kNone = 0, kA, kB, kOut };

struct Segment {
  Operand a, b;
  void* c = nullptr;
  int64_t ldc = 0;
  Storage c_type = Storage::kF32;
  int64_t M = 0, N = 0, K = 0;
  float alpha = 1, beta = 0;
  // Dropout: row keys of the mask's rows (indexed by the row the mask is on), the site's key,
  // the probability; `mask` says which operand it applies to.
  MaskOn mask = MaskOn::kNone;
  const uint64_t* row_keys = nullptr;
  uint64_t module_key = 0;
  double dropout = 0;

  // x * the mask's keep scale at (row, col), or 0 where dropped.
  LF_HD float masked(float x, int64_t row, int64_t col) const {
    if (!dropout_keep(row_keys[row], module_key, static_cast<uint64_t>(col), dropout)) return 0.0f;
    return x * (1.0f / static_cast<float>(1.0 - dropout));  // as lora_dropout's keep scale
  }
};

struct SegmentedGemm : KernelShape<256, 0> {
  static constexpr int kTile = 32;
  static constexpr int kMaxSegments = 8;
  struct Params {
    Segment segments[kMaxSegments];
    int count = 0;
  };
  struct Shared {
    float a[kTile][kTile + 1];  // [m][k] of the slice
    float b[kTile][kTile + 1];  // [k][n]
  };
  struct Thread {
    float acc[4];  // rows ty, ty + 8, ty + 16, ty + 24 of column tx
  };

  LF_HD static int64_t tiles(int64_t n) { return (n + kTile - 1) / kTile; }
  LF_HD static int phases(const Params& p) {
    int64_t k = 0;
    for (int i = 0; i < p.count; i++) k = p.segments[i].K > k ? p.segments[i].K : k;
    return static_cast<int>(2 * tiles(k) + 1);
  }
  static Dim3 grid(const Params& p) {
    int64_t most = 0;
    for (int i = 0; i < p.count; i++) {
      const int64_t t = tiles(p.segments[i].M) * tiles(p.segments[i].N);
      most = t > most ? t : most;
    }
    return {static_cast<unsigned>(most), static_cast<unsigned>(p.count), 1};
  }

  LF_HD static void run(int phase, const Params& p, Shared& sh, Thread& th, const At& at) {
    const Segment& s = p.segments[at.block.y];
    const int64_t tiles_n = tiles(s.N);
    const int64_t tile = at.block.x;
    const bool inside = tile < tiles(s.M) * tiles_n;
    const int64_t m0 = inside ? tile / tiles_n * kTile : 0, n0 = inside ? tile % tiles_n * kTile : 0;
    const int tx = at.thread % kTile, ty = at.thread / kTile;  // ty in [0, 8)
    if (phase == 0) {
      for (float& a : th.acc) a = 0;
    }
    if (phase + 1 == phases(p)) {
      if (!inside) return;
      const int64_t n = n0 + tx;
      for (int i = 0; i < 4; i++) {
        const int64_t m = m0 + ty + 8 * i;
        if (m >= s.M || n >= s.N) continue;
        float v = s.alpha * th.acc[i];
        if (s.mask == MaskOn::kOut) v = s.masked(v, m, n);
        const int64_t at_c = m * s.ldc + n;
        if (s.c_type == Storage::kBF16) {
          bf16* c = static_cast<bf16*>(s.c);
          c[at_c] = from_float<bf16>(s.beta == 0.0f ? v : v + s.beta * to_float(c[at_c]));
        } else {
          float* c = static_cast<float*>(s.c);
          c[at_c] = s.beta == 0.0f ? v : v + s.beta * c[at_c];
        }
      }
      return;
    }
    const int64_t k0 = (phase / 2) * kTile;
    if (phase % 2 == 0) {
      // Load the slice: 1024 elements of each operand, 4 a thread; zeros outside.
      for (int i = 0; i < 4; i++) {
        const int r = ty + 8 * i;
        const int64_t m = m0 + r, k = k0 + tx;
        float a = 0;
        if (inside && m < s.M && k < s.K) {
          a = s.a.at(m, k);
          if (s.mask == MaskOn::kA) a = s.masked(a, m, k);
        }
        sh.a[r][tx] = a;
        const int64_t kb = k0 + r, n = n0 + tx;
        float b = 0;
        if (inside && kb < s.K && n < s.N) {
          b = s.b.at(kb, n);
          if (s.mask == MaskOn::kB) b = s.masked(b, kb, n);
        }
        sh.b[r][tx] = b;
      }
    } else {
      for (int i = 0; i < 4; i++) {
        float acc = th.acc[i];
        for (int k = 0; k < kTile; k++) acc += sh.a[ty + 8 * i][k] * sh.b[k][tx];
        th.acc[i] = acc;
      }
    }
  }
};

}  // namespace loraflow::cuda
