// read.h: reading typed fields out of a spec (spec/value.h), with errors that name the field.
// Arrays of values the engine keeps (weights, data) are typed leaves, moved out, never copied.
#pragma once
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/check.h"
#include "model/llama_config.h"
#include "spec/value.h"

namespace loraflow::spec {

inline const Value& field(const Value& o, const std::string& key, const std::string& where) {
  LF_CHECK(o.is_object(), where << " must be an object");
  const Value* v = o.find(key);
  LF_CHECK(v != nullptr, where << ": `" << key << "` is missing");
  return *v;
}

inline Value& field(Value& o, const std::string& key, const std::string& where) {
  LF_CHECK(o.is_object(), where << " must be an object");
  Value* v = o.find(key);
  LF_CHECK(v != nullptr, where << ": `" << key << "` is missing");
  return *v;
}

inline bool has(const Value& o, const std::string& key) { return o.is_object() && o.has(key); }

inline double number(const Value& o, const std::string& key, const std::string& where) {
  const Value& v = field(o, key, where);
  LF_CHECK(v.is_number(), where << ": `" << key << "` must be a number");
  return v.as_number();
}

inline int64_t integer(const Value& o, const std::string& key, const std::string& where) {
  const double d = number(o, key, where);
  LF_CHECK(std::isfinite(d) && std::fabs(d) <= 9.007199254740992e15 && d == std::floor(d), where << ": `" << key << "` must be a whole number");
  return static_cast<int64_t>(d);
}

inline bool boolean(const Value& o, const std::string& key, const std::string& where) {
  const Value& v = field(o, key, where);
  LF_CHECK(v.is_bool(), where << ": `" << key << "` must be true or false");
  return v.as_bool();
}

inline const std::string& text(const Value& o, const std::string& key, const std::string& where) {
  const Value& v = field(o, key, where);
  LF_CHECK(v.is_string(), where << ": `" << key << "` must be a string");
  return v.as_string();
}

template <typename V>
V& object(V& o, const std::string& key, const std::string& where) {
  V& v = field(o, key, where);
  LF_CHECK(v.is_object(), where << ": `" << key << "` must be an object");
  return v;
}

template <typename V>
V& array(V& o, const std::string& key, const std::string& where) {
  V& v = field(o, key, where);
  LF_CHECK(v.is_array(), where << ": `" << key << "` must be an array");
  return v;
}

// Element i of an array, which must be an object; `where` names it.
template <typename V>
V& object_at(V& a, size_t i, const std::string& where) {
  LF_CHECK(a.is_array() && i < a.size() && a.at(i).is_object(), where << " must be an object");
  return a.at(i);
}

// The typed leaf's values, exactly `expected` of them (any count when expected < 0), moved out.
template <typename T>
std::vector<T> typed(Value& v, int64_t expected, const std::string& what);

#define LF_TYPED(T, K, DATA)                                                                                                   \
  template <>                                                                                                                     \
  inline std::vector<T> typed<T>(Value & v, int64_t expected, const std::string& what) {                                         \
    LF_CHECK(v.kind() == Value::Kind::K, what << " has the wrong array type (" << kind_name(v.kind()) << ")");                  \
    LF_CHECK(expected < 0 || static_cast<int64_t>(v.typed_size()) == expected, what << " has " << v.typed_size() << " elements, expected " << expected); \
    return std::move(v.DATA());                                                                                                   \
  }
LF_TYPED(float, kF32, f32_data)
LF_TYPED(double, kF64, f64_data)
LF_TYPED(int32_t, kI32, i32_data)
LF_TYPED(uint64_t, kU64, u64_data)
#undef LF_TYPED

inline std::vector<float> floats(Value& v, int64_t expected, const std::string& what) { return typed<float>(v, expected, what); }
inline std::vector<int32_t> ints(Value& v, int64_t expected, const std::string& what) { return typed<int32_t>(v, expected, what); }
inline std::vector<uint64_t> keys(Value& v, int64_t expected, const std::string& what) { return typed<uint64_t>(v, expected, what); }

// f32 or f64 values, as doubles.
inline std::vector<double> reals(Value& v, int64_t expected, const std::string& what) {
  if (v.kind() == Value::Kind::kF32) {
    auto f = typed<float>(v, expected, what);
    return std::vector<double>(f.begin(), f.end());
  }
  return typed<double>(v, expected, what);
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
LlamaConfig llama_config(const Value& o);

}  // namespace loraflow::spec
