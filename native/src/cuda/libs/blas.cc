#include "cuda/libs/blas.h"

#include <dlfcn.h>

#include "core/check.h"

namespace loraflow::cuda {

LibrarySpec cublaslt_spec() {
  LibrarySpec s;
  s.name = "cuBLASLt";
  s.variable = "LORAFLOW_CUBLASLT";
  s.files = {"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"};
  s.wheels = {"nvidia/cublas/lib", "nvidia/cu13/lib"};
#define LF_NAME(type, symbol) s.symbols.push_back(#symbol);
  LF_CUBLASLT_SYMBOLS(LF_NAME)
#undef LF_NAME
  return s;
}

struct Blas::Prepared {
  lt::MatmulDesc desc = nullptr;
  lt::MatrixLayout a = nullptr, b = nullptr, c = nullptr;
  lt::MatmulAlgo algo{};
};

namespace {

int lt_type(GemmType t) { return t == GemmType::kBF16 ? lt::kR16BF : lt::kR32F; }

}  // namespace

Blas::Blas(Device& device) : device_(device), lib_(open_library(cublaslt_spec())) {
#define LF_RESOLVE(type, fn) fn = reinterpret_cast<lt::type>(lib_.symbol(#fn));
  LF_CUBLASLT_SYMBOLS(LF_RESOLVE)
#undef LF_RESOLVE
  // The fake says why it refused a call; the real library has no such entry.
  void* h = ::dlopen(lib_.path().c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
  if (h != nullptr) {
    last_error_ = reinterpret_cast<const char* (*)()>(::dlsym(h, "lfFakeCublasLtLastError"));
    ::dlclose(h);
  }
  version_ = cublasLtGetVersion();
  check(cublasLtCreate(&handle_), "cublasLtCreate", nullptr);
  workspace_bytes_ = 32u << 20;
  workspace_ = device_.allocate(workspace_bytes_);
}

void Blas::destroy(Prepared& p) {
  for (lt::MatrixLayout l : {p.a, p.b, p.c}) {
    if (l) cublasLtMatrixLayoutDestroy(l);
  }
  if (p.desc) cublasLtMatmulDescDestroy(p.desc);
}

Blas::~Blas() {
  for (auto& [shape, p] : prepared_) destroy(*p);
  if (handle_) cublasLtDestroy(handle_);
  try {
    if (workspace_) device_.release(workspace_);
  } catch (...) {
  }
}

void Blas::check(lt::Status s, const char* call, const GemmShape* g) const {
  if (s == lt::kSuccess) return;
  const std::string why = last_error_ ? std::string(": ") + last_error_() : "";
  std::string what;
  if (g) {
    what = " (GEMM [" + std::to_string(g->M) + ", " + std::to_string(g->N) + ", " + std::to_string(g->K) + "]" + (g->ta ? " A^T" : "") + (g->tb ? " B^T" : "") +
           (g->batch > 1 ? ", batch " + std::to_string(g->batch) : "") + ")";
  }
  LF_CHECK(false, "cuBLASLt (" << lib_.path() << "): " << call << " failed with status " << s << why << what);
}

Blas::Prepared& Blas::prepare(const GemmShape& g) {
  auto it = prepared_.find(g);
  if (it != prepared_.end()) return *it->second;
  LF_CHECK(g.M > 0 && g.N > 0 && g.K > 0 && g.batch >= 1, "GEMM of an empty shape [" << g.M << ", " << g.N << ", " << g.K << "]");
  auto p = std::make_unique<Prepared>();
  try {
    describe(g, *p);
  } catch (...) {
    destroy(*p);
    throw;
  }
  return *prepared_.emplace(g, std::move(p)).first->second;
}

void Blas::describe(const GemmShape& g, Prepared& prepared) {
  Prepared* p = &prepared;
  // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: cuBLASLt's A is our B.
  check(cublasLtMatmulDescCreate(&p->desc, lt::kCompute32F, lt::kR32F), "cublasLtMatmulDescCreate", &g);
  const int32_t ta = g.tb ? lt::kOpT : lt::kOpN, tb = g.ta ? lt::kOpT : lt::kOpN;
  check(cublasLtMatmulDescSetAttribute(p->desc, lt::kDescTransA, &ta, sizeof ta), "cublasLtMatmulDescSetAttribute", &g);
  check(cublasLtMatmulDescSetAttribute(p->desc, lt::kDescTransB, &tb, sizeof tb), "cublasLtMatmulDescSetAttribute", &g);
  // Stored column-major: our B is [N, K] (or [K, N] when transposed) of leading dimension ldb ...
  const uint64_t M = static_cast<uint64_t>(g.M), N = static_cast<uint64_t>(g.N), K = static_cast<uint64_t>(g.K);
  check(cublasLtMatrixLayoutCreate(&p->a, lt_type(g.ab), g.tb ? K : N, g.tb ? N : K, g.ldb), "cublasLtMatrixLayoutCreate", &g);
  check(cublasLtMatrixLayoutCreate(&p->b, lt_type(g.ab), g.ta ? M : K, g.ta ? K : M, g.lda), "cublasLtMatrixLayoutCreate", &g);
  check(cublasLtMatrixLayoutCreate(&p->c, lt_type(g.c), N, M, g.ldc), "cublasLtMatrixLayoutCreate", &g);
  if (g.batch > 1) {
    for (auto [layout, stride] : {std::pair<lt::MatrixLayout, int64_t>{p->a, g.stride_b}, {p->b, g.stride_a}, {p->c, g.stride_c}}) {
      check(cublasLtMatrixLayoutSetAttribute(layout, lt::kLayoutBatchCount, &g.batch, sizeof g.batch), "cublasLtMatrixLayoutSetAttribute", &g);
      check(cublasLtMatrixLayoutSetAttribute(layout, lt::kLayoutStridedBatchOffset, &stride, sizeof stride), "cublasLtMatrixLayoutSetAttribute", &g);
    }
  }
  lt::MatmulPreference pref = nullptr;
  check(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate", &g);
  const uint64_t ws = workspace_bytes_;
  check(cublasLtMatmulPreferenceSetAttribute(pref, lt::kPrefMaxWorkspaceBytes, &ws, sizeof ws), "cublasLtMatmulPreferenceSetAttribute", &g);
  lt::HeuristicResult result{};
  int found = 0;
  const lt::Status s = cublasLtMatmulAlgoGetHeuristic(handle_, p->desc, p->a, p->b, p->c, p->c, pref, 1, &result, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  check(s, "cublasLtMatmulAlgoGetHeuristic", &g);
  LF_CHECK(found > 0, "cuBLASLt (" << lib_.path() << ") has no algorithm for GEMM [" << g.M << ", " << g.N << ", " << g.K << "]");
  p->algo = result.algo;
}

void Blas::gemm(Stream& stream, const GemmShape& g, float alpha, const void* A, const void* B, float beta, void* C) {
  Prepared& p = prepare(g);
  check(cublasLtMatmul(handle_, p.desc, &alpha, B, p.a, A, p.b, &beta, C, p.c, C, p.c, &p.algo, workspace_, workspace_bytes_, device_.native(stream)), "cublasLtMatmul", &g);
}

}  // namespace loraflow::cuda
