// phase.h: the form every CUDA kernel of the engine is written in, so that CI can run it without
// a GPU. A kernel is a struct with
//   Params            what it reads and writes (plain pointers and sizes, passed by value);
//   Shared            its shared memory;
//   Thread            per-thread state that lives across a barrier;
//   kThreads          threads per block (one dimension);
//   kPhases           phases per block, or phases(params) where the count depends on the launch
//                     (a loop over tiles of a reduction dimension: two phases per tile);
//   grid(params)      blocks of the launch;
//   run(k, params, shared, thread, at)   phase k of one thread.
// A barrier stands between consecutive phases and nowhere else; warp collectives are not used
// (a block reduction is a sequence of phases through shared memory). On the GPU, device_launch.cuh
// runs the phases with __syncthreads() between them; in CI, emulate.h runs every thread of a
// block phase by phase in forward, reverse and shuffled order, with poisoned shared memory.
#pragma once
#include <cstdint>

#include "core/host_device.h"

namespace loraflow::cuda {

struct Dim3 {
  unsigned x = 1, y = 1, z = 1;
};

// Where a thread is: its block in the grid and its index in the block.
struct At {
  Dim3 block, grid;
  int thread = 0;
};

// Steps of a tree reduction over n (a power of two) values.
constexpr int log2_of(int n) { return n <= 1 ? 0 : 1 + log2_of(n / 2); }

// The parts of a kernel most kernels leave plain: its block size, its phase count, no shared
// memory and no per-thread state (a kernel declares its own Shared or Thread to have them).
template <int Threads, int Phases>
struct KernelShape {
  static constexpr int kThreads = Threads;
  static constexpr int kPhases = Phases;
  struct Shared {};
  struct Thread {};
  // Phases of a launch; a kernel whose count depends on its parameters declares its own.
  template <typename P>
  LF_HD static int phases(const P&) {
    return kPhases;
  }
};

// A kernel that sums over each row in a block of its own: phase 0 leaves each thread's partial
// sum in `sum`, the tree steps add them up, and the last phase reads the total in sum[0].
struct RowSumShape : KernelShape<256, log2_of(256) + 2> {
  static constexpr int kSteps = log2_of(kThreads);
  struct Shared {
    float sum[kThreads];
  };
};

// Step `step` (0-based) of a block-wide sum of v[0..n): after log2(n) steps, v[0] holds the sum,
// always added in the same order, so the result is the same on every device and thread order.
LF_HD inline void tree_sum_step(float* v, int n, int step, int thread) {
  const int half = n >> (step + 1);
  if (thread < half) v[thread] += v[thread + half];
}

LF_HD inline void tree_max_step(float* v, int n, int step, int thread) {
  const int half = n >> (step + 1);
  if (thread < half) v[thread] = v[thread] > v[thread + half] ? v[thread] : v[thread + half];
}

}  // namespace loraflow::cuda

namespace loraflow::cuda {

// Blocks of a grid-stride loop over n items, kThreads a block: enough to fill any device, and
// no more blocks than items need.
inline Dim3 stride_grid(int64_t n, int threads) {
  const int64_t blocks = (n + threads - 1) / threads;
  return {static_cast<unsigned>(blocks < 1 ? 1 : blocks > 8192 ? 8192 : blocks), 1, 1};
}

// The first item of a thread in a grid-stride loop, and the stride.
LF_HD inline int64_t stride_first(const At& at, int threads) { return static_cast<int64_t>(at.block.x) * threads + at.thread; }
LF_HD inline int64_t stride_step(const At& at, int threads) { return static_cast<int64_t>(at.grid.x) * threads; }

}  // namespace loraflow::cuda
