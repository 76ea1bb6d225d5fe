// check.h: LF_CHECK(cond, message): throws EngineError naming file:line, so native errors reach
// JavaScript as exceptions with a message instead of aborting the process.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace loraflow {

struct EngineError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

#define LF_CHECK(cond, ...)                                                              \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      std::ostringstream lf_check_stream_;                                               \
      lf_check_stream_ << __VA_ARGS__ << " (" << __FILE__ << ":" << __LINE__ << ")";     \
      throw ::loraflow::EngineError(lf_check_stream_.str());                             \
    }                                                                                    \
  } while (0)

}  // namespace loraflow
