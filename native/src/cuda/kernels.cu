// kernels.cu: the device build of every kernel in cuda/kernels/, for each storage type the
// backend uses (bf16 activations and weights; fp32 for statistics and gradients kept in fp32).
#include "cuda/device_launch.cuh"
#include "cuda/kernels/attention.h"
#include "cuda/kernels/cross_entropy.h"
#include "cuda/kernels/elementwise.h"
#include "cuda/kernels/optimizer.h"
#include "cuda/kernels/rmsnorm.h"
#include "cuda/kernels/segmented_gemm.h"
#include "cuda/launch.h"

namespace loraflow::cuda {

template <typename K>
int launch(const typename K::Params& params, void* stream) {
  return static_cast<int>(launch_on<K>(params, static_cast<cudaStream_t>(stream)));
}

#define LF_LAUNCH(...) template int launch<__VA_ARGS__>(const typename __VA_ARGS__::Params&, void*);
#define LF_LAUNCH_TYPES(K) LF_LAUNCH(K<bf16>) LF_LAUNCH(K<float>)
#define LF_LAUNCH_ELEMENTWISE(T)                                                                  \
  LF_LAUNCH(ElementwiseKernel<T, Elementwise::kCopy>) LF_LAUNCH(ElementwiseKernel<T, Elementwise::kAccumulate>) \
  LF_LAUNCH(ElementwiseKernel<T, Elementwise::kZero>) LF_LAUNCH(ElementwiseKernel<T, Elementwise::kAdd>)

LF_LAUNCH_TYPES(RmsnormForward)
LF_LAUNCH_TYPES(RmsnormBackward)
LF_LAUNCH_TYPES(EmbeddingKernel)
LF_LAUNCH_TYPES(SwigluForward)
LF_LAUNCH_TYPES(SwigluBackward)
LF_LAUNCH_TYPES(RopeKernel)
LF_LAUNCH_TYPES(CrossEntropyKernel)
LF_LAUNCH_TYPES(AttentionForward)
LF_LAUNCH_TYPES(AttentionRowDot)
LF_LAUNCH_TYPES(AttentionBackwardQuery)
LF_LAUNCH_TYPES(AttentionBackwardKeyValue)
LF_LAUNCH(SegmentedGemm)
LF_LAUNCH(OptimizerKernel)
LF_LAUNCH(SquaredNormKernel)
LF_LAUNCH_ELEMENTWISE(bf16)
LF_LAUNCH_ELEMENTWISE(float)

}  // namespace loraflow::cuda
