// json.cc: see json.h.
#include "spec/json.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "core/check.h"

namespace loraflow::spec {
namespace {

constexpr int kMaxDepth = 128;

class Parser {
 public:
  Parser(std::string_view text, const std::string& source, const LoadArray& load) : text_(text), source_(source), load_(load) {}

  Value document() {
    Value v = value(0);
    space();
    if (pos_ != text_.size()) fail("text after the JSON value");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    size_t line = 1, column = 1;
    for (size_t i = 0; i < pos_ && i < text_.size(); i++) {
      if (text_[i] == '\n') line++, column = 1;
      else column++;
    }
    LF_CHECK(false, source_ << ":" << line << ":" << column << ": " << what);
    std::abort();  // not reached: LF_CHECK(false) throws
  }

  void space() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' || text_[pos_] == '\n' || text_[pos_] == '\r')) pos_++;
  }

  bool take(char c) {
    space();
    if (pos_ < text_.size() && text_[pos_] == c) {
      pos_++;
      return true;
    }
    return false;
  }

  void expect(char c) {
    if (!take(c)) fail(std::string("expected `") + c + "`");
  }

  bool word(std::string_view w) {
    if (text_.substr(pos_, w.size()) != w) return false;
    pos_ += w.size();
    return true;
  }

  Value value(int depth) {
    if (depth > kMaxDepth) fail("nested more than " + std::to_string(kMaxDepth) + " deep");
    space();
    if (pos_ >= text_.size()) fail("unexpected end of the text");
    const char c = text_[pos_];
    if (c == '{') return object(depth);
    if (c == '[') return array(depth);
    if (c == '"') return Value::string(string());
    if (word("true")) return Value::boolean(true);
    if (word("false")) return Value::boolean(false);
    if (word("null")) return {};
    if (c == '-' || (c >= '0' && c <= '9')) return Value::number(number());
    fail(std::string("unexpected character `") + (c >= 32 && c < 127 ? std::string(1, c) : "\\x" + std::to_string(static_cast<unsigned char>(c))) + "`");
  }

  Value array(int depth) {
    expect('[');
    Value out = Value::array();
    if (take(']')) return out;
    do out.push(value(depth + 1));
    while (take(','));
    expect(']');
    return out;
  }

  Value object(int depth) {
    const size_t start = pos_;
    expect('{');
    Value out = Value::object();
    if (!take('}')) {
      do {
        space();
        if (pos_ >= text_.size() || text_[pos_] != '"') fail("expected a member name");
        std::string key = string();
        expect(':');
        if (out.has(key)) fail("member `" + key + "` twice");
        out.set(key, value(depth + 1));
      } while (take(','));
      expect('}');
    }
    if (const Value* type = out.find("$array")) return typed(out, *type, start);
    return out;
  }

  // {"$array": "f32", "offset": 64, "length": 1000}: a typed leaf.
  Value typed(const Value& o, const Value& type, size_t start) {
    const size_t here = pos_;
    pos_ = start;
    const Value* offset = o.find("offset");
    const Value* length = o.find("length");
    auto whole = [](const Value* v) { return v != nullptr && v->is_number() && v->as_number() >= 0 && v->as_number() <= 9.007199254740992e15 && v->as_number() == std::floor(v->as_number()); };
    if (!type.is_string() || !whole(offset) || !whole(length) || o.members().size() != 3) fail("an array reference is {\"$array\": TYPE, \"offset\": BYTES, \"length\": N}");
    Value::Kind kind;
    const std::string& t = type.as_string();
    if (t == "f32") kind = Value::Kind::kF32;
    else if (t == "f64") kind = Value::Kind::kF64;
    else if (t == "i32") kind = Value::Kind::kI32;
    else if (t == "u64") kind = Value::Kind::kU64;
    else fail("an array of unknown type `" + t + "` (f32, f64, i32, u64)");
    const std::string where = source_ + ": the array at byte " + std::to_string(start);
    Value v = load_(kind, static_cast<uint64_t>(offset->as_number()), static_cast<uint64_t>(length->as_number()), where);
    pos_ = here;
    return v;
  }

  std::string string() {
    pos_++;  // the opening quote
    std::string out;
    for (;;) {
      if (pos_ >= text_.size()) fail("a string that does not end");
      const char c = text_[pos_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) fail("a control character inside a string");
      if (c != '\\') {
        out.push_back(c);
        continue;
      }
      if (pos_ >= text_.size()) fail("a string that does not end");
      const char e = text_[pos_++];
      switch (e) {
        case '"': out.push_back('"'); break;
        case '\\': out.push_back('\\'); break;
        case '/': out.push_back('/'); break;
        case 'b': out.push_back('\b'); break;
        case 'f': out.push_back('\f'); break;
        case 'n': out.push_back('\n'); break;
        case 'r': out.push_back('\r'); break;
        case 't': out.push_back('\t'); break;
        case 'u': {
          uint32_t cp = hex4();
          if (cp >= 0xd800 && cp < 0xdc00) {
            if (!word("\\u")) fail("a lone surrogate in a string");
            const uint32_t low = hex4();
            if (low < 0xdc00 || low >= 0xe000) fail("a lone surrogate in a string");
            cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
          } else if (cp >= 0xdc00 && cp < 0xe000) {
            fail("a lone surrogate in a string");
          }
          utf8(cp, out);
          break;
        }
        default: fail(std::string("an unknown escape `\\") + e + "`");
      }
    }
  }

  uint32_t hex4() {
    if (pos_ + 4 > text_.size()) fail("a short \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
      const char c = text_[pos_++];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= static_cast<uint32_t>(c - '0');
      else if (c >= 'a' && c <= 'f') v |= static_cast<uint32_t>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= static_cast<uint32_t>(c - 'A' + 10);
      else fail("a bad \\u escape");
    }
    return v;
  }

  static void utf8(uint32_t cp, std::string& out) {
    if (cp < 0x80) out.push_back(static_cast<char>(cp));
    else if (cp < 0x800) {
      out.push_back(static_cast<char>(0xc0 | (cp >> 6)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    } else if (cp < 0x10000) {
      out.push_back(static_cast<char>(0xe0 | (cp >> 12)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    } else {
      out.push_back(static_cast<char>(0xf0 | (cp >> 18)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    }
  }

  // JSON's grammar checked here; the value by strtod (correctly rounded).
  double number() {
    const size_t start = pos_;
    auto digit = [&] { return pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9'; };
    if (text_[pos_] == '-') pos_++;
    if (!digit()) fail("a number without digits");
    if (text_[pos_] == '0') pos_++;
    else while (digit()) pos_++;
    if (pos_ < text_.size() && text_[pos_] == '.') {
      pos_++;
      if (!digit()) fail("a number without digits after its point");
      while (digit()) pos_++;
    }
    if (pos_ < text_.size() && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
      pos_++;
      if (pos_ < text_.size() && (text_[pos_] == '+' || text_[pos_] == '-')) pos_++;
      if (!digit()) fail("a number without digits in its exponent");
      while (digit()) pos_++;
    }
    const std::string digits(text_.substr(start, pos_ - start));
    errno = 0;
    const double d = std::strtod(digits.c_str(), nullptr);
    if (!std::isfinite(d)) fail("a number out of range");
    return d;
  }

  std::string_view text_;
  const std::string& source_;
  const LoadArray& load_;
  size_t pos_ = 0;
};

}  // namespace

Value parse_json(std::string_view text, const std::string& source, const LoadArray& load) { return Parser(text, source, load).document(); }

}  // namespace loraflow::spec
