// value.h: what the engine is given to run (a lowered plan, weights, adapters, data), as one
// tree, whichever way it arrives: from JavaScript (binding/napi_value.h converts the object the
// runtime passes) or from a file (spec/run_file.h, which the standalone driver reads). The
// readers (spec/read.h, spec/program_read.h, spec/train_read.h) take this tree, so both ways
// in are checked by the same code. Large arrays are typed leaves (a Float32Array, a tensor of a
// run file), moved out by the reader that takes them rather than copied.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace loraflow::spec {

class Value {
 public:
  enum class Kind { kNull, kBool, kNumber, kString, kArray, kObject, kF32, kF64, kI32, kU64 };

  Value() = default;
  static Value boolean(bool b);
  static Value number(double d);
  static Value string(std::string s);
  static Value array(std::vector<Value> items = {});
  static Value object();
  static Value f32(std::vector<float> v);
  static Value f64(std::vector<double> v);
  static Value i32(std::vector<int32_t> v);
  static Value u64(std::vector<uint64_t> v);

  Kind kind() const { return kind_; }
  bool is_number() const { return kind_ == Kind::kNumber; }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_bool() const { return kind_ == Kind::kBool; }
  bool is_array() const { return kind_ == Kind::kArray; }
  bool is_object() const { return kind_ == Kind::kObject; }
  bool is_typed() const { return kind_ >= Kind::kF32; }

  double as_number() const { return number_; }
  bool as_bool() const { return bool_; }
  const std::string& as_string() const { return string_; }

  // Arrays.
  size_t size() const { return items_.size(); }
  const Value& at(size_t i) const { return items_[i]; }
  Value& at(size_t i) { return items_[i]; }
  void push(Value v) { items_.push_back(std::move(v)); }

  // Objects: members in the order they were set; a key set twice keeps its first place.
  bool has(const std::string& key) const { return find(key) != nullptr; }
  const Value* find(const std::string& key) const;
  Value* find(const std::string& key);
  void set(const std::string& key, Value v);
  const std::vector<std::pair<std::string, Value>>& members() const { return members_; }
  std::vector<std::pair<std::string, Value>>& members() { return members_; }

  // Typed leaves: their element count, and their data moved out (the leaf is left empty).
  size_t typed_size() const;
  std::vector<float>& f32_data() { return f32_; }
  std::vector<double>& f64_data() { return f64_; }
  std::vector<int32_t>& i32_data() { return i32_; }
  std::vector<uint64_t>& u64_data() { return u64_; }
  const std::vector<float>& f32_data() const { return f32_; }
  const std::vector<double>& f64_data() const { return f64_; }
  const std::vector<int32_t>& i32_data() const { return i32_; }
  const std::vector<uint64_t>& u64_data() const { return u64_; }

 private:
  Kind kind_ = Kind::kNull;
  bool bool_ = false;
  double number_ = 0;
  std::string string_;
  std::vector<Value> items_;
  std::vector<std::pair<std::string, Value>> members_;
  std::vector<float> f32_;
  std::vector<double> f64_;
  std::vector<int32_t> i32_;
  std::vector<uint64_t> u64_;
};

const char* kind_name(Value::Kind k);

}  // namespace loraflow::spec
