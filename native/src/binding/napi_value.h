// napi_value.h: a JavaScript value as a spec tree (spec/value.h), which the engine's readers
// take: objects (own enumerable properties, in order), arrays, numbers, strings, booleans, and
// Float32/Float64/Int32/BigUint64 arrays as typed leaves. null and undefined are null; anything
// else (a function, a symbol, another kind of typed array) is refused, naming where it was.
#pragma once
#include <napi.h>

#include <string>

#include "core/check.h"
#include "spec/value.h"

namespace loraflow::js {

template <typename T>
std::vector<T> typed_copy(const Napi::TypedArray& t) {
  auto arr = t.As<Napi::TypedArrayOf<T>>();
  return std::vector<T>(arr.Data(), arr.Data() + arr.ElementLength());
}

inline spec::Value to_spec(const Napi::Value& v, const std::string& where, int depth = 0) {
  LF_CHECK(depth < 64, where << " is nested too deeply");
  if (v.IsNull() || v.IsUndefined()) return {};
  if (v.IsBoolean()) return spec::Value::boolean(v.As<Napi::Boolean>().Value());
  if (v.IsNumber()) return spec::Value::number(v.As<Napi::Number>().DoubleValue());
  if (v.IsString()) return spec::Value::string(v.As<Napi::String>().Utf8Value());
  if (v.IsTypedArray()) {
    const Napi::TypedArray t = v.As<Napi::TypedArray>();
    switch (t.TypedArrayType()) {
      case napi_float32_array: return spec::Value::f32(typed_copy<float>(t));
      case napi_float64_array: return spec::Value::f64(typed_copy<double>(t));
      case napi_int32_array: return spec::Value::i32(typed_copy<int32_t>(t));
      case napi_biguint64_array: return spec::Value::u64(typed_copy<uint64_t>(t));
      default: LF_CHECK(false, where << " has the wrong array type");
    }
  }
  if (v.IsArray()) {
    const Napi::Array a = v.As<Napi::Array>();
    spec::Value out = spec::Value::array();
    for (uint32_t i = 0; i < a.Length(); i++) out.push(to_spec(a.Get(i), where + "[" + std::to_string(i) + "]", depth + 1));
    return out;
  }
  LF_CHECK(v.IsObject() && !v.IsFunction(), where << " is neither data nor an object");
  const Napi::Object o = v.As<Napi::Object>();
  const Napi::Array names = o.GetPropertyNames();
  spec::Value out = spec::Value::object();
  for (uint32_t i = 0; i < names.Length(); i++) {
    const std::string key = names.Get(i).ToString().Utf8Value();
    out.set(key, to_spec(o.Get(key), where + "." + key, depth + 1));
  }
  return out;
}

}  // namespace loraflow::js
