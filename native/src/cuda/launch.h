// launch.h: queues a phase-split kernel on a CUDA stream, from code that g++ compiles (the stream
// is a cudaStream_t, the result a cudaError_t). kernels.cu instantiates it for every kernel the
// CUDA backend runs; without nvcc there is no definition, and nothing calls it.
#pragma once

namespace loraflow::cuda {

template <typename K>
int launch(const typename K::Params& params, void* stream);

}  // namespace loraflow::cuda
