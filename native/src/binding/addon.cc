// addon.cc: the loraflow_native module: what the engine was built with, and its entry points.
#include <napi.h>

#include "cpu/gemm.h"

namespace loraflow {
Napi::Value RunOp(const Napi::CallbackInfo& info);
Napi::Value ModelGrad(const Napi::CallbackInfo& info);
Napi::Value Train(const Napi::CallbackInfo& info);
}

namespace {

Napi::Object BuildInfo(Napi::Env env) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("blas", Napi::String::New(env, loraflow::gemm_uses_blas() ? "openblas" : "portable"));
  o.Set("compiler", Napi::String::New(env, __VERSION__));
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("build", BuildInfo(env));
  exports.Set("op", Napi::Function::New(env, loraflow::RunOp, "op"));
  exports.Set("modelGrad", Napi::Function::New(env, loraflow::ModelGrad, "modelGrad"));
  exports.Set("train", Napi::Function::New(env, loraflow::Train, "train"));
  return exports;
}

}  // namespace

NODE_API_MODULE(loraflow_native, Init)
