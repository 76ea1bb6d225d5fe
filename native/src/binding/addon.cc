// addon.cc: the loraflow_native module: what the engine was built with, and its entry points.
#include <napi.h>

#include <chrono>
#include <vector>

#include "cpu/gemm.h"
#include "cuda/cuda_device.h"
#include "cuda/libs/blas.h"
#include "cuda/libs/comm.h"
#include "cuda/libs/library.h"

#ifdef LORAFLOW_HAVE_CBLAS
extern "C" void openblas_set_num_threads(int);
#endif

namespace loraflow {
Napi::Value RunOp(const Napi::CallbackInfo& info);
Napi::Value ModelGrad(const Napi::CallbackInfo& info);
Napi::Value Train(const Napi::CallbackInfo& info);
Napi::Value ExchangePaths(const Napi::CallbackInfo& info);
Napi::Function GeneratorClass(Napi::Env env);
}

namespace {

// benchGemm(M, N, K, repeats, threads): seconds per float GEMM of this build (OpenBLAS on
// `threads` threads, or the single-threaded portable kernel), so benchmarks can report ratios to
// the machine's own rate measured in the same process.
Napi::Value BenchGemm(const Napi::CallbackInfo& info) {
  const int64_t M = info[0].As<Napi::Number>().Int64Value(), N = info[1].As<Napi::Number>().Int64Value();
  const int64_t K = info[2].As<Napi::Number>().Int64Value(), repeats = info[3].As<Napi::Number>().Int64Value();
#ifdef LORAFLOW_HAVE_CBLAS
  openblas_set_num_threads(info[4].As<Napi::Number>().Int32Value());
#endif
  std::vector<float> a(static_cast<size_t>(M * K), 0.5f), b(static_cast<size_t>(K * N), 0.25f), c(static_cast<size_t>(M * N));
  loraflow::gemm<float>(false, true, M, N, K, 1.0f, a.data(), K, b.data(), K, 0.0f, c.data(), N);
  const auto start = std::chrono::steady_clock::now();
  for (int64_t r = 0; r < repeats; r++) loraflow::gemm<float>(false, true, M, N, K, 1.0f, a.data(), K, b.data(), K, 0.0f, c.data(), N);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return Napi::Number::New(info.Env(), seconds / static_cast<double>(repeats));
}

// probeCuda(): {devices: string[], problem: string, libraries: {cublasLt, nccl}}: the GPUs
// cudart sees, or why there are none, and where each library loads from ({path}) or why it does
// not ({problem}, the search report).
Napi::Value ProbeCuda(const Napi::CallbackInfo& info) {
  const loraflow::cuda::CudaProbe probe = loraflow::cuda::probe_cuda();
  Napi::Object o = Napi::Object::New(info.Env());
  Napi::Object libraries = Napi::Object::New(info.Env());
  for (const auto& [key, spec] : {std::make_pair("cublasLt", loraflow::cuda::cublaslt_spec()), std::make_pair("nccl", loraflow::cuda::nccl_spec())}) {
    Napi::Object l = Napi::Object::New(info.Env());
    try {
      const loraflow::cuda::Library lib = loraflow::cuda::open_library(spec);
      l.Set("path", Napi::String::New(info.Env(), lib.path()));
    } catch (const std::exception& e) {
      l.Set("problem", Napi::String::New(info.Env(), e.what()));
    }
    libraries.Set(key, l);
  }
  o.Set("libraries", libraries);
  Napi::Array devices = Napi::Array::New(info.Env(), probe.devices.size());
  for (uint32_t i = 0; i < probe.devices.size(); i++) devices.Set(i, Napi::String::New(info.Env(), probe.devices[i]));
  o.Set("devices", devices);
  o.Set("problem", Napi::String::New(info.Env(), probe.problem));
  return o;
}

Napi::Object BuildInfo(Napi::Env env) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("blas", Napi::String::New(env, loraflow::gemm_uses_blas() ? "openblas" : "portable"));
#ifdef LORAFLOW_HAVE_CUDA
  o.Set("cuda", Napi::Boolean::New(env, true));
#else
  o.Set("cuda", Napi::Boolean::New(env, false));
#endif
  o.Set("compiler", Napi::String::New(env, __VERSION__));
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("build", BuildInfo(env));
  exports.Set("benchGemm", Napi::Function::New(env, BenchGemm, "benchGemm"));
  exports.Set("probeCuda", Napi::Function::New(env, ProbeCuda, "probeCuda"));
  exports.Set("op", Napi::Function::New(env, loraflow::RunOp, "op"));
  exports.Set("modelGrad", Napi::Function::New(env, loraflow::ModelGrad, "modelGrad"));
  exports.Set("train", Napi::Function::New(env, loraflow::Train, "train"));
  exports.Set("exchangePaths", Napi::Function::New(env, loraflow::ExchangePaths, "exchangePaths"));
  exports.Set("Generator", loraflow::GeneratorClass(env));
  return exports;
}

}  // namespace

NODE_API_MODULE(loraflow_native, Init)
