// declarations.cc: the project's own cuBLASLt and NCCL declarations (cuda/libs/*_api.h) checked
// against the real headers, where the GPU machine's pip wheels ship them. bench/gpu/check.sh
// compiles this with their include folders; it builds only if every constant, struct size and
// function's parameter sizes agree. Nothing here runs.
#include <array>
#include <cstddef>

#include <cublasLt.h>
#include <nccl.h>

#include "cuda/libs/cublaslt_api.h"
#include "cuda/libs/nccl_api.h"

namespace lt = loraflow::cuda::lt;
namespace nc = loraflow::cuda::nccl;

// The sizes of a function's result and parameters: a parameter taken by value where the other
// takes a pointer, or one missing, shows as a difference.
template <typename R, typename... A>
constexpr std::array<size_t, sizeof...(A) + 1> shape(R (*)(A...)) {
  return {sizeof(R), sizeof(A)...};
}
template <typename F, typename G>
constexpr bool same_shape(F f, G g) {
  return shape(f) == shape(g);
}

static_assert(lt::kR32F == CUDA_R_32F && lt::kR16BF == CUDA_R_16BF, "cudaDataType_t");
static_assert(lt::kCompute32F == CUBLAS_COMPUTE_32F, "cublasComputeType_t");
static_assert(lt::kOpN == CUBLAS_OP_N && lt::kOpT == CUBLAS_OP_T, "cublasOperation_t");
static_assert(lt::kDescTransA == CUBLASLT_MATMUL_DESC_TRANSA && lt::kDescTransB == CUBLASLT_MATMUL_DESC_TRANSB, "cublasLtMatmulDescAttributes_t");
static_assert(lt::kLayoutBatchCount == CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT && lt::kLayoutStridedBatchOffset == CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, "cublasLtMatrixLayoutAttribute_t");
static_assert(lt::kPrefMaxWorkspaceBytes == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, "cublasLtMatmulPreferenceAttributes_t");
static_assert(lt::kSuccess == CUBLAS_STATUS_SUCCESS && lt::kInvalidValue == CUBLAS_STATUS_INVALID_VALUE && lt::kNotSupported == CUBLAS_STATUS_NOT_SUPPORTED, "cublasStatus_t");
static_assert(sizeof(lt::MatmulAlgo) == sizeof(cublasLtMatmulAlgo_t), "cublasLtMatmulAlgo_t");
static_assert(sizeof(lt::HeuristicResult) == sizeof(cublasLtMatmulHeuristicResult_t), "cublasLtMatmulHeuristicResult_t");
static_assert(offsetof(lt::HeuristicResult, workspaceSize) == offsetof(cublasLtMatmulHeuristicResult_t, workspaceSize), "workspaceSize");
static_assert(offsetof(lt::HeuristicResult, state) == offsetof(cublasLtMatmulHeuristicResult_t, state), "state");

#define LF_SAME(type, fn) static_assert(same_shape(lt::type{}, &fn), #fn " differs from the documented declaration");
LF_CUBLASLT_SYMBOLS(LF_SAME)
#undef LF_SAME

static_assert(sizeof(nc::UniqueId) == sizeof(ncclUniqueId), "ncclUniqueId");
static_assert(nc::kSuccess == ncclSuccess && nc::kInvalidArgument == ncclInvalidArgument && nc::kInvalidUsage == ncclInvalidUsage, "ncclResult_t");
static_assert(nc::kInt32 == ncclInt32 && nc::kFloat32 == ncclFloat32 && nc::kFloat64 == ncclFloat64 && nc::kBfloat16 == ncclBfloat16, "ncclDataType_t");
static_assert(nc::kSum == ncclSum, "ncclRedOp_t");

#define LF_SAME(type, fn) static_assert(same_shape(nc::type{}, &fn), #fn " differs from the documented declaration");
LF_NCCL_SYMBOLS(LF_SAME)
#undef LF_SAME

int main() { return 0; }
