// main.cc: runs the native tests registered in cases.h.
// Usage: loraflow_native_tests [--gpu] [--list | --case NAME]; exits 1 when a case fails, 2 on
// bad usage. The gpu.* cases (a real GPU against the harness, bench/gpu/check.sh) run only with
// --gpu, and then only they.
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "cases.h"

int main(int argc, char** argv) {
  using loraflow::test::registry;
  const bool gpu = argc >= 2 && std::strcmp(argv[1], "--gpu") == 0;
  if (gpu) argc--, argv++;
  auto chosen = [&](const std::string& name) { return (name.rfind("gpu.", 0) == 0) == gpu; };
  if (argc == 2 && std::strcmp(argv[1], "--list") == 0) {
    for (const auto& c : registry()) {
      if (chosen(c.name)) std::printf("%s\n", c.name.c_str());
    }
    return 0;
  }
  const char* only = argc == 3 && std::strcmp(argv[1], "--case") == 0 ? argv[2] : nullptr;
  if (argc != 1 && !only) {
    std::fprintf(stderr, "usage: loraflow_native_tests [--gpu] [--list | --case NAME]\n");
    return 2;
  }
  int failed = 0, ran = 0;
  for (const auto& c : registry()) {
    if (!chosen(c.name) || (only && c.name != only)) continue;
    ran++;
    loraflow::test::Outcome o;
    try {
      o = c.run();
    } catch (const std::exception& e) {
      o = {false, std::string("threw: ") + e.what()};
    }
    std::printf("%s %s: %s\n", o.ok ? "ok" : "FAIL", c.name.c_str(), o.message.c_str());
    failed += o.ok ? 0 : 1;
  }
  if (ran == 0) {
    std::fprintf(stderr, "no case named %s\n", only ? only : "");
    return 2;
  }
  return failed > 0 ? 1 : 0;
}
