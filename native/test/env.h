// env.h: sets environment variables for the length of a scope and restores them after, so that
// cases run one after another in one process do not see each other's settings.
#pragma once
#include <cstdlib>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace loraflow::test {

class ScopedEnv {
 public:
  // value nullopt: unset it for the scope.
  ScopedEnv(std::vector<std::pair<std::string, std::optional<std::string>>> settings) {
    for (auto& [name, value] : settings) {
      const char* old = std::getenv(name.c_str());
      saved_.emplace_back(name, old ? std::optional<std::string>(old) : std::nullopt);
      if (value) ::setenv(name.c_str(), value->c_str(), 1);
      else ::unsetenv(name.c_str());
    }
  }
  ~ScopedEnv() {
    for (auto& [name, value] : saved_) {
      if (value) ::setenv(name.c_str(), value->c_str(), 1);
      else ::unsetenv(name.c_str());
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

}  // namespace loraflow::test
