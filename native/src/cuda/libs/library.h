// library.h: finds and opens a GPU library (cuBLASLt, NCCL) at run time, so that one build of
// the engine serves machines with and without them. Looked for, in order:
//   the file named by the library's own variable (LORAFLOW_CUBLASLT, LORAFLOW_NCCL: how tests
//     choose the project's stand-ins), and nothing else when it is set;
//   each folder of LORAFLOW_CUDA_LIBS, then of LD_LIBRARY_PATH;
//   the CUDA toolkit's and the system's library folders;
//   the nvidia/*/lib folders of Python site-packages, where pip puts cuBLAS and NCCL.
// When none loads, the error names every place looked at and what was found there.
#pragma once
#include <string>
#include <vector>

namespace loraflow::cuda {

struct LibrarySpec {
  std::string name;                   // "cuBLASLt"
  std::string variable;               // "LORAFLOW_CUBLASLT"
  std::vector<std::string> files;     // "libcublasLt.so.13", ... in order of preference
  std::vector<std::string> wheels;    // site-packages subfolders: "nvidia/cublas/lib", ...
  std::vector<std::string> symbols;   // every function the engine calls
};

class Library {
 public:
  Library() = default;
  Library(const Library&) = delete;
  Library& operator=(const Library&) = delete;
  Library(Library&& other) noexcept;
  Library& operator=(Library&& other) noexcept;
  ~Library();

  const std::string& path() const { return path_; }
  // The address of a symbol the spec named.
  void* symbol(const std::string& name) const;

 private:
  friend Library open_library(const LibrarySpec& spec);
  void* handle_ = nullptr;
  std::string path_;
  std::vector<std::pair<std::string, void*>> symbols_;
};

// Throws EngineError with the search report when no candidate loads with every symbol.
Library open_library(const LibrarySpec& spec);

// The folders searched after the variable, in order (for messages and tests).
std::vector<std::string> library_folders(const LibrarySpec& spec);

}  // namespace loraflow::cuda
