// value.cc: see value.h.
#include "spec/value.h"

namespace loraflow::spec {

Value Value::boolean(bool b) {
  Value v;
  v.kind_ = Kind::kBool;
  v.bool_ = b;
  return v;
}

Value Value::number(double d) {
  Value v;
  v.kind_ = Kind::kNumber;
  v.number_ = d;
  return v;
}

Value Value::string(std::string s) {
  Value v;
  v.kind_ = Kind::kString;
  v.string_ = std::move(s);
  return v;
}

Value Value::array(std::vector<Value> items) {
  Value v;
  v.kind_ = Kind::kArray;
  v.items_ = std::move(items);
  return v;
}

Value Value::object() {
  Value v;
  v.kind_ = Kind::kObject;
  return v;
}

// The four typed leaves differ only in their element type.
#define LF_TYPED_LEAF(NAME, KIND, MEMBER, T) \
  Value Value::NAME(std::vector<T> data) {    \
    Value v;                                  \
    v.kind_ = Kind::KIND;                     \
    v.MEMBER = std::move(data);               \
    return v;                                 \
  }
LF_TYPED_LEAF(f32, kF32, f32_, float)
LF_TYPED_LEAF(f64, kF64, f64_, double)
LF_TYPED_LEAF(i32, kI32, i32_, int32_t)
LF_TYPED_LEAF(u64, kU64, u64_, uint64_t)
#undef LF_TYPED_LEAF

const Value* Value::find(const std::string& key) const {
  for (const auto& [k, v] : members_) {
    if (k == key) return &v;
  }
  return nullptr;
}

Value* Value::find(const std::string& key) {
  for (auto& [k, v] : members_) {
    if (k == key) return &v;
  }
  return nullptr;
}

void Value::set(const std::string& key, Value v) {
  if (Value* existing = find(key)) *existing = std::move(v);
  else members_.emplace_back(key, std::move(v));
}

size_t Value::typed_size() const {
  switch (kind_) {
    case Kind::kF32: return f32_.size();
    case Kind::kF64: return f64_.size();
    case Kind::kI32: return i32_.size();
    case Kind::kU64: return u64_.size();
    default: return 0;
  }
}

const char* kind_name(Value::Kind k) {
  switch (k) {
    case Value::Kind::kNull: return "null";
    case Value::Kind::kBool: return "a boolean";
    case Value::Kind::kNumber: return "a number";
    case Value::Kind::kString: return "a string";
    case Value::Kind::kArray: return "an array";
    case Value::Kind::kObject: return "an object";
    case Value::Kind::kF32: return "f32 values";
    case Value::Kind::kF64: return "f64 values";
    case Value::Kind::kI32: return "i32 values";
    case Value::Kind::kU64: return "u64 values";
  }
  return "?";
}

}  // namespace loraflow::spec
