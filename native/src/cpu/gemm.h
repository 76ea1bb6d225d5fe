// gemm.h: C = alpha * op(A) op(B) + beta * C on row-major matrices, for float (OpenBLAS when the
// build found it, else the portable kernel) and double (portable kernel: the oracle precision of
// the gradient checks).
#pragma once
#include <cstdint>

namespace loraflow {

// op(A) is [M, K]: A is [M, K] (lda >= K), or [K, M] when transA (lda >= M). Likewise op(B) is
// [K, N]. C is [M, N] with ldc >= N.
template <typename T>
void gemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
          const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

// Makes the calling thread's GEMM buffers now, so that its GEMMs allocate nothing later.
void gemm_prepare_thread();

// Whether float GEMMs go to OpenBLAS.
bool gemm_uses_blas();

}  // namespace loraflow
