// cublaslt_fake.cc: a strict stand-in for libcublasLt, built by the project so that CI drives
// the engine's cuBLASLt calls through the same dlopen path as on a GPU. It keeps the parts of
// the documented contract the engine relies on and refuses everything else, with a reason
// (lfFakeCublasLtLastError): descriptors it did not make, types other than bf16 or fp32 with fp32
// compute, shapes that do not agree with the transposes, leading dimensions shorter than their
// rows, an algorithm not from its heuristic, matrices outside the emulated device's memory, and
// streams that are not the emulated device's. The product runs, when the stream reaches it,
// on the CPU: fp32 sums in order of k, one rounding into D's type, C unread when beta is 0.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#include "cuda/bf16.h"
#include "cuda/emu_abi.h"
#include "cuda/libs/cublaslt_api.h"

using namespace loraflow::cuda;
using namespace loraflow::cuda::lt;

namespace {

constexpr uint32_t kHandleMagic = 0x4c544841, kDescMagic = 0x4c544445, kLayoutMagic = 0x4c544c41, kPrefMagic = 0x4c545052;
constexpr uint64_t kAlgoMagic = 0x4c46414c474f0001ull;

struct FakeHandle {
  uint32_t magic = kHandleMagic;
};
struct FakeDesc {
  uint32_t magic = kDescMagic;
  int compute = 0, scale = 0;
  int32_t ta = kOpN, tb = kOpN;
};
struct FakeLayout {
  uint32_t magic = kLayoutMagic;
  int type = 0;
  uint64_t rows = 0, cols = 0;
  int64_t ld = 0;
  int32_t batch = 1;
  int64_t stride = 0;
};
struct FakePref {
  uint32_t magic = kPrefMagic;
  uint64_t workspace = 0;
};

thread_local std::string last_error;

Status fail(Status s, const std::string& why) {
  last_error = why;
  return s;
}

template <typename T, uint32_t M>
bool valid(const void* p) {
  return p != nullptr && static_cast<const T*>(p)->magic == M;
}

size_t type_size(int t) { return t == kR16BF ? 2 : 4; }

float load(const void* base, int type, int64_t i) {
  return type == kR16BF ? to_float(static_cast<const bf16*>(base)[i]) : static_cast<const float*>(base)[i];
}

void store(void* base, int type, int64_t i, float v) {
  if (type == kR16BF) {
    static_cast<bf16*>(base)[i] = from_float<bf16>(v);
  } else {
    static_cast<float*>(base)[i] = v;
  }
}

// Elements from a matrix's first to one past its last, over all batches.
int64_t extent(const FakeLayout& l) {
  return (l.batch - 1) * l.stride + l.ld * (static_cast<int64_t>(l.cols) - 1) + static_cast<int64_t>(l.rows);
}

// Checks a product's descriptors; fills m, n, k.
Status check_shapes(const FakeDesc& d, const FakeLayout& a, const FakeLayout& b, const FakeLayout& c, const FakeLayout& dd, int64_t& m, int64_t& n, int64_t& k) {
  if (d.compute != kCompute32F || d.scale != kR32F) return fail(kNotSupported, "only CUBLAS_COMPUTE_32F with fp32 scale is supported");
  if (a.type != b.type || (a.type != kR16BF && a.type != kR32F)) return fail(kNotSupported, "A and B must both be bf16 or both fp32");
  if (c.type != dd.type || (c.type != a.type && c.type != kR32F)) return fail(kNotSupported, "C and D must be of one type: A's, or fp32");
  m = static_cast<int64_t>(dd.rows);
  n = static_cast<int64_t>(dd.cols);
  // A is stored [m, k], or [k, m] when transposed; B [k, n], or [n, k].
  k = static_cast<int64_t>(d.ta == kOpN ? a.cols : a.rows);
  if (static_cast<int64_t>(d.ta == kOpN ? a.rows : a.cols) != m) return fail(kInvalidValue, "op(A) does not have D's rows");
  const int64_t bk = d.tb == kOpN ? static_cast<int64_t>(b.rows) : static_cast<int64_t>(b.cols);
  const int64_t bn = d.tb == kOpN ? static_cast<int64_t>(b.cols) : static_cast<int64_t>(b.rows);
  if (bk != k) return fail(kInvalidValue, "op(A) and op(B) disagree on k");
  if (bn != n) return fail(kInvalidValue, "op(B) does not have D's columns");
  if (c.rows != dd.rows || c.cols != dd.cols) return fail(kInvalidValue, "C and D differ in shape");
  for (const FakeLayout* l : {&a, &b, &c, &dd}) {
    if (l->rows == 0 || l->cols == 0) return fail(kInvalidValue, "an empty matrix");
    if (l->ld < static_cast<int64_t>(l->rows)) return fail(kInvalidValue, "a leading dimension shorter than its rows");
    if (l->batch != dd.batch) return fail(kInvalidValue, "batch counts differ");
  }
  if (dd.batch > 1 && dd.stride < dd.ld * static_cast<int64_t>(dd.cols)) return fail(kInvalidValue, "D's batches overlap");
  return kSuccess;
}

struct Product {
  FakeDesc d;
  FakeLayout a, b, c, dd;
  int64_t m, n, k;
  float alpha, beta;
  const void *A, *B, *C;
  void* D;
};

const char* run(void* arg) {
  auto* p = static_cast<Product*>(arg);
  for (int32_t batch = 0; batch < p->dd.batch; batch++) {
    for (int64_t j = 0; j < p->n; j++) {
      for (int64_t i = 0; i < p->m; i++) {
        float acc = 0;
        for (int64_t l = 0; l < p->k; l++) {
          const int64_t ai = batch * p->a.stride + (p->d.ta == kOpN ? i + l * p->a.ld : l + i * p->a.ld);
          const int64_t bi = batch * p->b.stride + (p->d.tb == kOpN ? l + j * p->b.ld : j + l * p->b.ld);
          acc += load(p->A, p->a.type, ai) * load(p->B, p->b.type, bi);
        }
        const int64_t ci = batch * p->c.stride + i + j * p->c.ld, di = batch * p->dd.stride + i + j * p->dd.ld;
        const float v = p->alpha * acc + (p->beta == 0.0f ? 0.0f : p->beta * load(p->C, p->c.type, ci));
        store(p->D, p->dd.type, di, v);
      }
    }
  }
  delete p;
  return nullptr;
}

// Makes a T (its magic set) for an out-pointer, or refuses a null one.
template <typename T, typename Out>
Status make(Out* out, const char* call, T*& made) {
  if (out == nullptr) return fail(kInvalidValue, std::string(call) + ": null pointer");
  made = new T();
  *out = reinterpret_cast<Out>(made);
  return kSuccess;
}

// Frees what make() made, refusing anything else (a second destroy included).
template <typename T, uint32_t M, typename In>
Status unmake(In p, const char* call) {
  if (!valid<T, M>(p)) return fail(kInvalidValue, std::string(call) + ": not one of its objects");
  reinterpret_cast<T*>(p)->magic = 0;
  delete reinterpret_cast<T*>(p);
  return kSuccess;
}

}  // namespace

extern "C" {

const char* lfFakeCublasLtLastError() { return last_error.c_str(); }

size_t cublasLtGetVersion() { return 130000; }

Status cublasLtCreate(Handle* h) {
  FakeHandle* x;
  return make(h, "cublasLtCreate", x);
}

Status cublasLtDestroy(Handle h) { return unmake<FakeHandle, kHandleMagic>(h, "cublasLtDestroy"); }

Status cublasLtMatmulDescCreate(MatmulDesc* d, int compute, int scale) {
  FakeDesc* x;
  const Status s = make(d, "cublasLtMatmulDescCreate", x);
  if (s == kSuccess) x->compute = compute, x->scale = scale;
  return s;
}

Status cublasLtMatmulDescDestroy(MatmulDesc d) { return unmake<FakeDesc, kDescMagic>(d, "cublasLtMatmulDescDestroy"); }

Status cublasLtMatmulDescSetAttribute(MatmulDesc d, int attr, const void* buf, size_t size) {
  if (!valid<FakeDesc, kDescMagic>(d)) return fail(kInvalidValue, "cublasLtMatmulDescSetAttribute: not a descriptor");
  auto* x = reinterpret_cast<FakeDesc*>(d);
  if ((attr != kDescTransA && attr != kDescTransB) || size != sizeof(int32_t) || buf == nullptr) return fail(kInvalidValue, "cublasLtMatmulDescSetAttribute: only TRANSA and TRANSB (int32) are supported");
  int32_t v;
  std::memcpy(&v, buf, sizeof v);
  if (v != kOpN && v != kOpT) return fail(kInvalidValue, "cublasLtMatmulDescSetAttribute: an operation other than N or T");
  (attr == kDescTransA ? x->ta : x->tb) = v;
  return kSuccess;
}

Status cublasLtMatrixLayoutCreate(MatrixLayout* l, int type, uint64_t rows, uint64_t cols, int64_t ld) {
  FakeLayout* x;
  const Status s = make(l, "cublasLtMatrixLayoutCreate", x);
  if (s == kSuccess) x->type = type, x->rows = rows, x->cols = cols, x->ld = ld;
  return s;
}

Status cublasLtMatrixLayoutDestroy(MatrixLayout l) { return unmake<FakeLayout, kLayoutMagic>(l, "cublasLtMatrixLayoutDestroy"); }

Status cublasLtMatrixLayoutSetAttribute(MatrixLayout l, int attr, const void* buf, size_t size) {
  if (!valid<FakeLayout, kLayoutMagic>(l) || buf == nullptr) return fail(kInvalidValue, "cublasLtMatrixLayoutSetAttribute: not a layout");
  auto* x = reinterpret_cast<FakeLayout*>(l);
  if (attr == kLayoutBatchCount && size == sizeof(int32_t)) {
    std::memcpy(&x->batch, buf, sizeof x->batch);
    return x->batch >= 1 ? kSuccess : fail(kInvalidValue, "a batch count below 1");
  }
  if (attr == kLayoutStridedBatchOffset && size == sizeof(int64_t)) {
    std::memcpy(&x->stride, buf, sizeof x->stride);
    return kSuccess;
  }
  return fail(kInvalidValue, "cublasLtMatrixLayoutSetAttribute: only BATCH_COUNT (int32) and STRIDED_BATCH_OFFSET (int64) are supported");
}

Status cublasLtMatmulPreferenceCreate(MatmulPreference* p) {
  FakePref* x;
  return make(p, "cublasLtMatmulPreferenceCreate", x);
}

Status cublasLtMatmulPreferenceDestroy(MatmulPreference p) { return unmake<FakePref, kPrefMagic>(p, "cublasLtMatmulPreferenceDestroy"); }

Status cublasLtMatmulPreferenceSetAttribute(MatmulPreference p, int attr, const void* buf, size_t size) {
  if (!valid<FakePref, kPrefMagic>(p) || buf == nullptr) return fail(kInvalidValue, "cublasLtMatmulPreferenceSetAttribute: not a preference");
  if (attr != kPrefMaxWorkspaceBytes || size != sizeof(uint64_t)) return fail(kInvalidValue, "cublasLtMatmulPreferenceSetAttribute: only MAX_WORKSPACE_BYTES (uint64) is supported");
  std::memcpy(&reinterpret_cast<FakePref*>(p)->workspace, buf, sizeof(uint64_t));
  return kSuccess;
}

Status cublasLtMatmulAlgoGetHeuristic(Handle h, MatmulDesc d, MatrixLayout a, MatrixLayout b, MatrixLayout c, MatrixLayout dd, MatmulPreference p,
                                      int requested, HeuristicResult* results, int* returned) {
  if (!valid<FakeHandle, kHandleMagic>(h) || !valid<FakeDesc, kDescMagic>(d) || !valid<FakePref, kPrefMagic>(p)) return fail(kInvalidValue, "heuristic: a handle, descriptor or preference it did not make");
  for (MatrixLayout l : {a, b, c, dd}) {
    if (!valid<FakeLayout, kLayoutMagic>(l)) return fail(kInvalidValue, "heuristic: a layout it did not make");
  }
  if (requested < 1 || results == nullptr || returned == nullptr) return fail(kInvalidValue, "heuristic: no room for a result");
  int64_t m, n, k;
  const Status s = check_shapes(*reinterpret_cast<FakeDesc*>(d), *reinterpret_cast<FakeLayout*>(a), *reinterpret_cast<FakeLayout*>(b), *reinterpret_cast<FakeLayout*>(c), *reinterpret_cast<FakeLayout*>(dd), m, n, k);
  if (s != kSuccess) return s;
  std::memset(results, 0, sizeof(HeuristicResult));
  results[0].algo.data[0] = kAlgoMagic;
  results[0].workspaceSize = 0;
  results[0].state = kSuccess;
  results[0].wavesCount = 1;
  *returned = 1;
  return kSuccess;
}

Status cublasLtMatmul(Handle h, MatmulDesc d, const void* alpha, const void* A, MatrixLayout a, const void* B, MatrixLayout b, const void* beta,
                      const void* C, MatrixLayout c, void* D, MatrixLayout dd, const MatmulAlgo* algo, void* workspace, size_t workspaceSize, void* stream) {
  if (!valid<FakeHandle, kHandleMagic>(h) || !valid<FakeDesc, kDescMagic>(d)) return fail(kInvalidValue, "matmul: a handle or descriptor it did not make");
  for (MatrixLayout l : {a, b, c, dd}) {
    if (!valid<FakeLayout, kLayoutMagic>(l)) return fail(kInvalidValue, "matmul: a layout it did not make");
  }
  if (algo == nullptr || algo->data[0] != kAlgoMagic) return fail(kInvalidValue, "matmul: an algorithm not from cublasLtMatmulAlgoGetHeuristic");
  if (alpha == nullptr || beta == nullptr || A == nullptr || B == nullptr || C == nullptr || D == nullptr) return fail(kInvalidValue, "matmul: a null pointer");
  (void)workspace;
  (void)workspaceSize;
  auto* p = new Product();
  p->d = *reinterpret_cast<FakeDesc*>(d);
  p->a = *reinterpret_cast<FakeLayout*>(a);
  p->b = *reinterpret_cast<FakeLayout*>(b);
  p->c = *reinterpret_cast<FakeLayout*>(c);
  p->dd = *reinterpret_cast<FakeLayout*>(dd);
  const Status s = check_shapes(p->d, p->a, p->b, p->c, p->dd, p->m, p->n, p->k);
  if (s != kSuccess) {
    delete p;
    return s;
  }
  std::memcpy(&p->alpha, alpha, sizeof(float));
  std::memcpy(&p->beta, beta, sizeof(float));
  p->A = A;
  p->B = B;
  p->C = C;
  p->D = D;
  auto* emu = static_cast<lf_emu_stream*>(stream);
  if (emu == nullptr || emu->magic != LF_EMU_STREAM_MAGIC) {
    delete p;
    return fail(kNotSupported, "matmul: the fake cuBLASLt runs only on the emulated device's streams");
  }
  struct Operand {
    const void* ptr;
    const FakeLayout* layout;
    const char* name;
  };
  for (const Operand& o : {Operand{A, &p->a, "A"}, Operand{B, &p->b, "B"}, Operand{C, &p->c, "C"}, Operand{D, &p->dd, "D"}}) {
    if (!emu->in_device(emu->self, o.ptr, static_cast<size_t>(extent(*o.layout)) * type_size(o.layout->type))) {
      delete p;
      return fail(kInvalidValue, std::string("matmul: ") + o.name + " is not inside one allocation of the device");
    }
  }
  emu->enqueue(emu->self, run, p);
  return kSuccess;
}

}  // extern "C"
