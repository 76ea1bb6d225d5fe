// blas.h: GEMMs for the CUDA backend through cuBLASLt (cublaslt_api.h), in the engine's row-major
// terms. The library is the real one on a GPU, the project's fake on the emulated device; which
// file was loaded is in library_path(). Descriptors are made once per distinct shape.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>

#include "cuda/device.h"
#include "cuda/libs/cublaslt_api.h"
#include "cuda/libs/library.h"

namespace loraflow::cuda {

enum class GemmType { kF32, kBF16 };

// C[M, N] = alpha * op(A)[M, K] op(B)[K, N] + beta * C, row-major with leading dimensions, fp32
// accumulation; `batch` products at element strides apart (attention's heads).
struct GemmShape {
  bool ta = false, tb = false;
  int64_t M = 0, N = 0, K = 0;
  GemmType ab = GemmType::kBF16, c = GemmType::kBF16;
  int64_t lda = 0, ldb = 0, ldc = 0;
  int32_t batch = 1;
  int64_t stride_a = 0, stride_b = 0, stride_c = 0;
  auto key() const { return std::tie(ta, tb, M, N, K, ab, c, lda, ldb, ldc, batch, stride_a, stride_b, stride_c); }
  bool operator<(const GemmShape& o) const { return key() < o.key(); }
};

class Blas {
 public:
  explicit Blas(Device& device);
  ~Blas();
  Blas(const Blas&) = delete;
  Blas& operator=(const Blas&) = delete;

  void gemm(Stream& stream, const GemmShape& shape, float alpha, const void* A, const void* B, float beta, void* C);
  const std::string& library_path() const { return lib_.path(); }
  size_t version() const { return version_; }

 private:
  struct Prepared;
  Prepared& prepare(const GemmShape& shape);
  // Makes the descriptors and picks the algorithm; what it made stays in `p` if it throws.
  void describe(const GemmShape& shape, Prepared& p);
  void destroy(Prepared& p);
  void check(lt::Status s, const char* call, const GemmShape* shape) const;

  Device& device_;
  Library lib_;
  const char* (*last_error_)() = nullptr;  // the fake's reasons, when it is the fake
#define LF_FIELD(type, symbol) lt::type symbol = nullptr;
  LF_CUBLASLT_SYMBOLS(LF_FIELD)
#undef LF_FIELD
  lt::Handle handle_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  size_t version_ = 0;
  std::map<GemmShape, std::unique_ptr<Prepared>> prepared_;
};

// What open_library() is given for cuBLASLt.
LibrarySpec cublaslt_spec();

}  // namespace loraflow::cuda
