// device_launch.cuh: the GPU side of phase.h: one __global__ wrapper runs a kernel's phases with
// a barrier between each two. Included only by .cu files.
#pragma once
#include <cuda_runtime.h>

#include "cuda/phase.h"

namespace loraflow::cuda {

template <typename K>
__global__ void __launch_bounds__(K::kThreads) phase_kernel(const typename K::Params params) {
  __shared__ typename K::Shared shared;
  typename K::Thread state;
  At at;
  at.block = {blockIdx.x, blockIdx.y, blockIdx.z};
  at.grid = {gridDim.x, gridDim.y, gridDim.z};
  at.thread = static_cast<int>(threadIdx.x);
  const int phases = K::phases(params);
#pragma unroll
  for (int phase = 0; phase < phases; phase++) {
    K::run(phase, params, shared, state, at);
    if (phase + 1 < phases) __syncthreads();
  }
}

template <typename K>
cudaError_t launch_on(const typename K::Params& params, cudaStream_t stream) {
  const Dim3 g = K::grid(params);
  if (g.x == 0 || g.y == 0 || g.z == 0) return cudaSuccess;
  phase_kernel<K><<<dim3(g.x, g.y, g.z), K::kThreads, 0, stream>>>(params);
  return cudaGetLastError();
}

}  // namespace loraflow::cuda
