// gemm.cc: row-major GEMM. The portable kernel packs a K x N panel of op(B) so the inner loop
// runs over contiguous memory, which compilers vectorise (AVX2/FMA with -march=native).
#include "cpu/gemm.h"

#include <algorithm>
#include <vector>

#ifdef LORAFLOW_HAVE_CBLAS
#include <cblas.h>
#endif

namespace loraflow {

namespace {

constexpr int64_t kBlockK = 256;
constexpr int64_t kBlockN = 512;

// Each thread's packing panel, made once: GEMMs allocate nothing.
template <typename T>
T* thread_panel() {
  thread_local std::vector<T> panel(static_cast<size_t>(kBlockK * kBlockN));
  return panel.data();
}

template <typename T>
void gemm_portable(bool transA, bool transB, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
                   const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  for (int64_t i = 0; i < M; i++) {
    T* c = C + i * ldc;
    if (beta == T(0)) std::fill(c, c + N, T(0));
    else if (beta != T(1)) for (int64_t j = 0; j < N; j++) c[j] *= beta;
  }
  if (K == 0 || alpha == T(0)) return;
  // panel: [kb, nb] slice of op(B), contiguous rows.
  T* const panel = thread_panel<T>();
  for (int64_t n0 = 0; n0 < N; n0 += kBlockN) {
    const int64_t nb = std::min(kBlockN, N - n0);
    for (int64_t k0 = 0; k0 < K; k0 += kBlockK) {
      const int64_t kb = std::min(kBlockK, K - k0);
      for (int64_t k = 0; k < kb; k++) {
        T* row = panel + k * nb;
        if (!transB) {
          const T* src = B + (k0 + k) * ldb + n0;
          std::copy(src, src + nb, row);
        } else {
          for (int64_t j = 0; j < nb; j++) row[j] = B[(n0 + j) * ldb + (k0 + k)];
        }
      }
      for (int64_t i = 0; i < M; i++) {
        T* __restrict c = C + i * ldc + n0;
        for (int64_t k = 0; k < kb; k++) {
          const T a = alpha * (transA ? A[(k0 + k) * lda + i] : A[i * lda + (k0 + k)]);
          if (a == T(0)) continue;
          const T* __restrict b = panel + k * nb;
          for (int64_t j = 0; j < nb; j++) c[j] += a * b[j];
        }
      }
    }
  }
}

}  // namespace

template <>
void gemm<float>(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                 const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
#ifdef LORAFLOW_HAVE_CBLAS
  cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans, static_cast<int>(M),
              static_cast<int>(N), static_cast<int>(K), alpha, A, static_cast<int>(lda), B, static_cast<int>(ldb), beta, C,
              static_cast<int>(ldc));
#else
  gemm_portable(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#endif
}

template <>
void gemm<double>(bool transA, bool transB, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
                  const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  gemm_portable(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void gemm_prepare_thread() {
  thread_panel<float>();
  thread_panel<double>();
}

bool gemm_uses_blas() {
#ifdef LORAFLOW_HAVE_CBLAS
  return true;
#else
  return false;
#endif
}

}  // namespace loraflow
