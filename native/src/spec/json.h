// json.h: strict JSON (RFC 8259) into a spec tree (spec/value.h), for run files. An object
// {"$array": TYPE, "offset": BYTES, "length": N} is a typed leaf whose values the caller loads
// (`load`, given the type, the byte offset and the count): so a run file's arrays are read
// straight into the vectors the engine keeps. Errors name the line and column; nesting is
// bounded, so no input can exhaust the stack.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "spec/value.h"

namespace loraflow::spec {

using LoadArray = std::function<Value(Value::Kind kind, uint64_t offset, uint64_t length, const std::string& where)>;

// `source` names the text in errors ("run.lfrun's header").
Value parse_json(std::string_view text, const std::string& source, const LoadArray& load);

}  // namespace loraflow::spec
