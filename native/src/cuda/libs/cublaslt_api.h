// cublaslt_api.h: the part of cuBLASLt's C API the engine calls, declared here from NVIDIA's
// documentation (no cuBLAS headers exist on the machines that build this), and loaded with
// dlopen (library.h). Descriptors are opaque and only made and destroyed by the library; the
// structs passed by value or filled by it keep their documented sizes (checked below), and
// bench/gpu/check.sh compares these declarations with the real header where one is installed.
#pragma once
#include <cstddef>
#include <cstdint>

namespace loraflow::cuda::lt {

using Handle = struct Opaque*;
using MatmulDesc = struct OpaqueDesc*;
using MatrixLayout = struct OpaqueLayout*;
using MatmulPreference = struct OpaquePreference*;
using Status = int;  // cublasStatus_t

constexpr Status kSuccess = 0;
constexpr Status kNotInitialized = 1;
constexpr Status kAllocFailed = 3;
constexpr Status kInvalidValue = 7;
constexpr Status kArchMismatch = 8;
constexpr Status kExecutionFailed = 13;
constexpr Status kInternalError = 14;
constexpr Status kNotSupported = 15;

// cudaDataType_t (library_types.h)
constexpr int kR32F = 0;
constexpr int kR16BF = 14;
// cublasComputeType_t
constexpr int kCompute32F = 68;
// cublasOperation_t
constexpr int32_t kOpN = 0;
constexpr int32_t kOpT = 1;
// cublasLtMatmulDescAttributes_t
constexpr int kDescTransA = 3;
constexpr int kDescTransB = 4;
// cublasLtMatrixLayoutAttribute_t
constexpr int kLayoutBatchCount = 5;
constexpr int kLayoutStridedBatchOffset = 6;
// cublasLtMatmulPreferenceAttributes_t
constexpr int kPrefMaxWorkspaceBytes = 1;

struct MatmulAlgo {
  uint64_t data[8];
};

struct HeuristicResult {
  MatmulAlgo algo;
  size_t workspaceSize;
  Status state;
  float wavesCount;
  int reserved[4];
};
static_assert(sizeof(MatmulAlgo) == 64, "cublasLtMatmulAlgo_t is 64 bytes");
static_assert(sizeof(HeuristicResult) == 96, "cublasLtMatmulHeuristicResult_t is 96 bytes");

using Create = Status (*)(Handle*);
using Destroy = Status (*)(Handle);
using GetVersion = size_t (*)();
using MatmulDescCreate = Status (*)(MatmulDesc*, int computeType, int scaleType);
using MatmulDescDestroy = Status (*)(MatmulDesc);
using MatmulDescSetAttribute = Status (*)(MatmulDesc, int attr, const void* buf, size_t size);
using MatrixLayoutCreate = Status (*)(MatrixLayout*, int type, uint64_t rows, uint64_t cols, int64_t ld);
using MatrixLayoutDestroy = Status (*)(MatrixLayout);
using MatrixLayoutSetAttribute = Status (*)(MatrixLayout, int attr, const void* buf, size_t size);
using MatmulPreferenceCreate = Status (*)(MatmulPreference*);
using MatmulPreferenceDestroy = Status (*)(MatmulPreference);
using MatmulPreferenceSetAttribute = Status (*)(MatmulPreference, int attr, const void* buf, size_t size);
using MatmulAlgoGetHeuristic = Status (*)(Handle, MatmulDesc, MatrixLayout A, MatrixLayout B, MatrixLayout C, MatrixLayout D, MatmulPreference,
                                          int requested, HeuristicResult* results, int* returned);
using Matmul = Status (*)(Handle, MatmulDesc, const void* alpha, const void* A, MatrixLayout Adesc, const void* B, MatrixLayout Bdesc,
                          const void* beta, const void* C, MatrixLayout Cdesc, void* D, MatrixLayout Ddesc, const MatmulAlgo* algo,
                          void* workspace, size_t workspaceSize, void* stream);

// The symbols, by the names the library exports.
#define LF_CUBLASLT_SYMBOLS(X)                                            \
  X(Create, cublasLtCreate)                                               \
  X(Destroy, cublasLtDestroy)                                             \
  X(GetVersion, cublasLtGetVersion)                                       \
  X(MatmulDescCreate, cublasLtMatmulDescCreate)                           \
  X(MatmulDescDestroy, cublasLtMatmulDescDestroy)                         \
  X(MatmulDescSetAttribute, cublasLtMatmulDescSetAttribute)               \
  X(MatrixLayoutCreate, cublasLtMatrixLayoutCreate)                       \
  X(MatrixLayoutDestroy, cublasLtMatrixLayoutDestroy)                     \
  X(MatrixLayoutSetAttribute, cublasLtMatrixLayoutSetAttribute)           \
  X(MatmulPreferenceCreate, cublasLtMatmulPreferenceCreate)               \
  X(MatmulPreferenceDestroy, cublasLtMatmulPreferenceDestroy)             \
  X(MatmulPreferenceSetAttribute, cublasLtMatmulPreferenceSetAttribute)   \
  X(MatmulAlgoGetHeuristic, cublasLtMatmulAlgoGetHeuristic)               \
  X(Matmul, cublasLtMatmul)

}  // namespace loraflow::cuda::lt
