// cases.h: the native tests' registry. A case is a name and a function that says whether it
// held and what it measured; files register theirs at static initialisation, and main.cc runs
// them (test/native/native.test.ts runs each as a test of its own).
#pragma once
#include <exception>
#include <functional>
#include <string>
#include <vector>

namespace loraflow::test {

struct Outcome {
  bool ok = true;
  std::string message;
};

struct Case {
  std::string name;
  std::function<Outcome()> run;
};

inline std::vector<Case>& registry() {
  static std::vector<Case> cases;
  return cases;
}

// Registers cases from a function run before main().
struct Register {
  explicit Register(void (*add)(std::vector<Case>&)) { add(registry()); }
};

// Runs fn and passes when it throws an error whose text holds `expected`.
template <typename Fn>
Outcome refused(Fn&& fn, const std::string& expected) {
  try {
    fn();
  } catch (const std::exception& e) {
    const std::string m = e.what();
    if (m.find(expected) == std::string::npos) return {false, "refused, but with: " + m};
    return {true, "refused: " + m.substr(0, 600)};
  }
  return {false, "not refused (expected \"" + expected + "\")"};
}

}  // namespace loraflow::test
