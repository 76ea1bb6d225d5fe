// generate_binding.cc: `new Generator({config, weights, adapter?, maxTokens})`, with
// feed(Int32Array) -> Float32Array (the logits after the last token fed), reset() and length:
// infer/generator.h for JavaScript. Generation is short work on the calling thread, a token at
// a time, so that the caller can stream each token as it comes.
#include <napi.h>

#include <memory>

#include "binding/napi_value.h"
#include "infer/generator.h"
#include "spec/read.h"

namespace loraflow {
namespace {

class GeneratorWrap : public Napi::ObjectWrap<GeneratorWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Generator", {InstanceMethod("feed", &GeneratorWrap::Feed), InstanceMethod("reset", &GeneratorWrap::Reset), InstanceAccessor("length", &GeneratorWrap::Length, nullptr)});
  }

  explicit GeneratorWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<GeneratorWrap>(info) {
    Napi::Env env = info.Env();
    try {
      spec::Value tree = js::to_spec(info[0], "spec");
      const LlamaConfig c = spec::llama_config(spec::object(tree, "config", "spec"));
      std::map<std::string, std::vector<float>> weights;
      spec::Value& w = spec::object(tree, "weights", "spec");
      for (size_t i = 0; i < w.members().size(); i++) {
        const std::string name = w.members()[i].first;
        weights[name] = spec::floats(*w.find(name), -1, "weights." + name);
      }
      SiteWeights lora;
      int64_t rank = 1;
      double scale = 0;
      if (tree.has("adapter")) {
        spec::Value& a = spec::object(tree, "adapter", "spec");
        rank = spec::integer(a, "rank", "adapter");
        scale = spec::number(a, "scale", "adapter");
        LF_CHECK(rank >= 1 && rank <= (int64_t(1) << 16), "adapter: rank " << rank);
        spec::Value& sites = spec::object(a, "sites", "adapter");
        for (size_t i = 0; i < sites.members().size(); i++) {
          const std::string key = sites.members()[i].first;
          const auto site = spec::lora_site(key, c, "adapter");
          spec::Value& so = *sites.find(key);
          lora[site] = {spec::floats(spec::field(so, "A", "adapter"), rank * module_in(c, site.second), "adapter." + key + ".A"),
                        spec::floats(spec::field(so, "B", "adapter"), module_out(c, site.second) * rank, "adapter." + key + ".B")};
        }
      }
      generator_ = std::make_unique<Generator>(c, std::move(weights), std::move(lora), rank, scale, spec::integer(tree, "maxTokens", "spec"));
    } catch (const Napi::Error&) {
      throw;
    } catch (const std::exception& e) {
      throw Napi::Error::New(env, std::string("generate: ") + e.what());
    }
  }

 private:
  Napi::Value Feed(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
      throw Napi::TypeError::New(env, "feed(Int32Array)");
    }
    const Napi::Int32Array tokens = info[0].As<Napi::Int32Array>();
    try {
      const std::vector<float>& logits = generator_->feed(tokens.Data(), static_cast<int64_t>(tokens.ElementLength()));
      auto out = Napi::Float32Array::New(env, logits.size());
      std::copy(logits.begin(), logits.end(), out.Data());
      return out;
    } catch (const std::exception& e) {
      throw Napi::Error::New(env, e.what());
    }
  }
  Napi::Value Reset(const Napi::CallbackInfo& info) {
    generator_->reset();
    return info.Env().Undefined();
  }
  Napi::Value Length(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), static_cast<double>(generator_->length())); }

  std::unique_ptr<Generator> generator_;
};

}  // namespace

Napi::Function GeneratorClass(Napi::Env env) { return GeneratorWrap::Define(env); }

}  // namespace loraflow
