// library_test.cc: how the engine finds cuBLASLt and NCCL, and what it says when it cannot: the
// file a variable names is the only one tried; a file without the library's functions is
// refused; a search that finds nothing names every place it looked and what was wrong there.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "cases.h"
#include "cuda/libs/blas.h"
#include "cuda/libs/comm.h"
#include "env.h"

using namespace loraflow::cuda;
using loraflow::test::Case;
using loraflow::test::Outcome;
using loraflow::test::refused;
using loraflow::test::ScopedEnv;

namespace {

Outcome named_file_missing(const LibrarySpec& spec) {
  const std::string file = "/nonexistent/" + spec.files.front();
  return refused(
      [&] {
        const ScopedEnv env({{spec.variable, file}});
        open_library(spec);
      },
      spec.name + ": cannot load " + file + " (named by " + spec.variable + "): " + file + ": cannot open shared object file");
}

Outcome named_file_lacks_functions(const LibrarySpec& spec) {
  return refused(
      [&] {
        const ScopedEnv env({{spec.variable, std::string("libm.so.6")}});
        open_library(spec);
      },
      "it lacks " + spec.symbols.front());
}

Outcome search_names_where_it_looked(const LibrarySpec& spec) {
  char dir[] = "/tmp/loraflow-libs-XXXXXX";
  if (::mkdtemp(dir) == nullptr) return {false, "mkdtemp failed"};
  const std::string junk = std::string(dir) + "/" + spec.files.front();
  std::ofstream(junk) << "not a library";
  const ScopedEnv env({{spec.variable, std::nullopt}, {"LORAFLOW_CUDA_LIBS", std::string(dir)}, {"LD_LIBRARY_PATH", std::nullopt}, {"VIRTUAL_ENV", std::nullopt}, {"CONDA_PREFIX", std::nullopt}});
  Outcome o;
  try {
    Library lib = open_library(spec);
    o = {true, spec.name + " is installed on this machine (" + lib.path() + "), so a failed search cannot be provoked here"};
  } catch (const std::exception& e) {
    std::string files;
    for (size_t i = 0; i < spec.files.size(); i++) files += (i ? ", " : "") + spec.files[i];
    const std::string m = e.what();
    const bool ok = m.find(spec.name + " not found: looked for " + files + " in " + spec.variable + " (unset), LORAFLOW_CUDA_LIBS (" + dir + "), LD_LIBRARY_PATH (unset)") != std::string::npos &&
                    m.find("Python site-packages (" + spec.wheels.front()) != std::string::npos && m.find(junk + ": " + junk + ": file too short") != std::string::npos;
    o = {ok, (ok ? "reported: " : "an incomplete report: ") + m};
  }
  std::remove(junk.c_str());
  ::rmdir(dir);
  return o;
}

void add_cases(std::vector<Case>& cases) {
  for (const LibrarySpec& spec : {cublaslt_spec(), nccl_spec()}) {
    cases.push_back({"loader." + spec.name + ".named_file_missing", [spec] { return named_file_missing(spec); }});
    cases.push_back({"loader." + spec.name + ".named_file_lacks_functions", [spec] { return named_file_lacks_functions(spec); }});
    cases.push_back({"loader." + spec.name + ".search_names_where_it_looked", [spec] { return search_names_where_it_looked(spec); }});
  }
}

const loraflow::test::Register registered(add_cases);

}  // namespace
