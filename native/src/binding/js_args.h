// js_args.h: reading typed arguments from JavaScript objects, with errors that name the field.
#pragma once
#include <napi.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/check.h"
#include "model/llama_config.h"

namespace loraflow::js {

inline Napi::Value field(const Napi::Object& o, const std::string& key, const std::string& where) {
  LF_CHECK(o.Has(key), where << ": `" << key << "` is missing");
  return o.Get(key);
}

inline double number(const Napi::Object& o, const std::string& key, const std::string& where) {
  Napi::Value v = field(o, key, where);
  LF_CHECK(v.IsNumber(), where << ": `" << key << "` must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

inline int64_t integer(const Napi::Object& o, const std::string& key, const std::string& where) {
  const double d = number(o, key, where);
  LF_CHECK(d == static_cast<double>(static_cast<int64_t>(d)), where << ": `" << key << "` must be a whole number");
  return static_cast<int64_t>(d);
}

inline bool boolean(const Napi::Object& o, const std::string& key, const std::string& where) {
  Napi::Value v = field(o, key, where);
  LF_CHECK(v.IsBoolean(), where << ": `" << key << "` must be true or false");
  return v.As<Napi::Boolean>().Value();
}

inline Napi::Object object(const Napi::Object& o, const std::string& key, const std::string& where) {
  Napi::Value v = field(o, key, where);
  LF_CHECK(v.IsObject(), where << ": `" << key << "` must be an object");
  return v.As<Napi::Object>();
}

inline Napi::Array array(const Napi::Object& o, const std::string& key, const std::string& where) {
  Napi::Value v = field(o, key, where);
  LF_CHECK(v.IsArray(), where << ": `" << key << "` must be an array");
  return v.As<Napi::Array>();
}

// A typed array of exactly `expected` elements (any length when expected < 0), copied out.
template <typename T, napi_typedarray_type Kind>
std::vector<T> typed(const Napi::Value& v, int64_t expected, const std::string& what) {
  LF_CHECK(v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == Kind, what << " has the wrong array type");
  auto arr = v.As<Napi::TypedArrayOf<T>>();
  LF_CHECK(expected < 0 || static_cast<int64_t>(arr.ElementLength()) == expected,
           what << " has " << arr.ElementLength() << " elements, expected " << expected);
  return std::vector<T>(arr.Data(), arr.Data() + arr.ElementLength());
}

inline std::vector<double> doubles(const Napi::Value& v, int64_t expected, const std::string& what) {
  return typed<double, napi_float64_array>(v, expected, what);
}

// A Float32Array or a Float64Array, as doubles.
inline std::vector<double> reals(const Napi::Value& v, int64_t expected, const std::string& what) {
  if (v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_float32_array) {
    auto f = typed<float, napi_float32_array>(v, expected, what);
    return std::vector<double>(f.begin(), f.end());
  }
  return doubles(v, expected, what);
}
inline std::vector<int32_t> ints(const Napi::Value& v, int64_t expected, const std::string& what) {
  return typed<int32_t, napi_int32_array>(v, expected, what);
}
inline std::vector<uint64_t> keys(const Napi::Value& v, int64_t expected, const std::string& what) {
  return typed<uint64_t, napi_biguint64_array>(v, expected, what);
}

// A LoRA site named "LAYER.MODULE" ("3.q_proj") -> (layer, module), checked against the model.
inline std::pair<int64_t, int> lora_site(const std::string& key, const LlamaConfig& c, const std::string& where) {
  const auto dot = key.find('.');
  const std::string layer_text = dot == std::string::npos ? "" : key.substr(0, dot);
  const bool digits = !layer_text.empty() && layer_text.size() < 10 && layer_text.find_first_not_of("0123456789") == std::string::npos;
  const int64_t layer = digits ? std::stoll(layer_text) : -1;
  const int module = dot == std::string::npos ? -1 : module_index(key.substr(dot + 1));
  LF_CHECK(module >= 0 && layer >= 0 && layer < c.layers, where << ": site `" << key << "` names no LoRA site of the model (LAYER.MODULE)");
  return {layer, module};
}

// The plan's model.config.
inline LlamaConfig llama_config(const Napi::Object& o) {
  const std::string w = "config";
  LlamaConfig c;
  c.layers = integer(o, "layers", w);
  c.hidden = integer(o, "hidden", w);
  c.heads = integer(o, "heads", w);
  c.kv_heads = integer(o, "kvHeads", w);
  c.head_dim = integer(o, "headDim", w);
  c.ffn = integer(o, "ffn", w);
  c.vocab = integer(o, "vocab", w);
  c.rope_theta = number(o, "ropeTheta", w);
  c.norm_eps = number(o, "normEps", w);
  c.tie_embeddings = boolean(o, "tieEmbeddings", w);
  LF_CHECK(c.layers > 0 && c.hidden > 0 && c.heads > 0 && c.kv_heads > 0 && c.head_dim > 0 && c.ffn > 0 && c.vocab > 0, "config: sizes must be positive");
  LF_CHECK(c.heads % c.kv_heads == 0 && c.head_dim % 2 == 0, "config: heads must be a multiple of kvHeads, headDim even");
  // The job language's bounds: sizes past them are no model anyone trains, and would only make
  // the products below overflow.
  LF_CHECK(c.layers <= 1024 && c.hidden <= (1 << 20) && c.heads <= 4096 && c.head_dim <= (1 << 16) && c.ffn <= (1 << 22) && c.vocab <= (1 << 24),
           "config: a size is beyond what loraflow takes (layers 1024, hidden 2^20, heads 4096, head_dim 2^16, ffn 2^22, vocab 2^24)");
  if (o.Has("ropeScaling") && o.Get("ropeScaling").IsObject()) {
    Napi::Object s = o.Get("ropeScaling").As<Napi::Object>();
    const std::string type = s.Has("rope_type") && s.Get("rope_type").IsString() ? s.Get("rope_type").As<Napi::String>().Utf8Value() : "";
    LF_CHECK(type == "linear" || type == "llama3", "config: ropeScaling of type `" << type << "` is not implemented");
    c.rope_scaling = type == "linear" ? LlamaConfig::kLinear : LlamaConfig::kLlama3;
    c.rope_factor = number(s, "factor", "config.ropeScaling");
    if (c.rope_scaling == LlamaConfig::kLlama3) {
      c.rope_low_freq_factor = number(s, "low_freq_factor", "config.ropeScaling");
      c.rope_high_freq_factor = number(s, "high_freq_factor", "config.ropeScaling");
      c.rope_original_max = number(s, "original_max_position_embeddings", "config.ropeScaling");
    }
    LF_CHECK(std::isfinite(c.rope_factor) && c.rope_factor > 0 && c.rope_low_freq_factor > 0 && c.rope_high_freq_factor > c.rope_low_freq_factor && c.rope_original_max > 0,
             "config: ropeScaling's numbers are out of range");
  }
  LF_CHECK(std::isfinite(c.rope_theta) && c.rope_theta > 0 && std::isfinite(c.norm_eps) && c.norm_eps > 0, "config: ropeTheta and normEps must be positive");
  return c;
}

}  // namespace loraflow::js
