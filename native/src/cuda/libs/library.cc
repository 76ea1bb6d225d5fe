#include "cuda/libs/library.h"

#include <dirent.h>
#include <dlfcn.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <sstream>

#include "core/check.h"

namespace loraflow::cuda {

namespace {

std::vector<std::string> split(const char* list) {
  std::vector<std::string> out;
  if (list == nullptr) return out;
  std::string s(list);
  size_t start = 0;
  while (start <= s.size()) {
    const size_t end = std::min(s.find(':', start), s.size());
    if (end > start) out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

bool is_file(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool is_dir(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// python3.* folders under `lib`, sorted.
std::vector<std::string> pythons(const std::string& lib) {
  std::vector<std::string> out;
  DIR* d = ::opendir(lib.c_str());
  if (d == nullptr) return out;
  while (dirent* e = ::readdir(d)) {
    const std::string n = e->d_name;
    if (n.rfind("python3", 0) == 0) out.push_back(lib + "/" + n);
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

// Opens `file` and resolves every symbol; on failure says why in `why` and returns false.
bool try_open(const std::string& file, const LibrarySpec& spec, void*& handle, std::vector<std::pair<std::string, void*>>& symbols, std::string& why) {
  handle = ::dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* e = ::dlerror();
    why = e ? e : "dlopen failed";
    return false;
  }
  symbols.clear();
  for (const std::string& name : spec.symbols) {
    void* f = ::dlsym(handle, name.c_str());
    if (f == nullptr) {
      why = "it lacks " + name;
      ::dlclose(handle);
      handle = nullptr;
      return false;
    }
    symbols.emplace_back(name, f);
  }
  return true;
}

}  // namespace

Library::Library(Library&& other) noexcept { *this = std::move(other); }

Library& Library::operator=(Library&& other) noexcept {
  if (this != &other) {
    if (handle_) ::dlclose(handle_);
    handle_ = other.handle_;
    path_ = std::move(other.path_);
    symbols_ = std::move(other.symbols_);
    other.handle_ = nullptr;
  }
  return *this;
}

Library::~Library() {
  if (handle_) ::dlclose(handle_);
}

void* Library::symbol(const std::string& name) const {
  for (const auto& [n, f] : symbols_) {
    if (n == name) return f;
  }
  LF_CHECK(false, path_ << ": " << name << " was not among the symbols asked for");
  return nullptr;
}

std::vector<std::string> library_folders(const LibrarySpec& spec) {
  std::vector<std::string> folders = split(std::getenv("LORAFLOW_CUDA_LIBS"));
  for (const std::string& f : split(std::getenv("LD_LIBRARY_PATH"))) folders.push_back(f);
  for (const char* f : {"/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib", "/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib"}) {
    folders.push_back(f);
  }
  std::vector<std::string> prefixes;
  for (const char* v : {"VIRTUAL_ENV", "CONDA_PREFIX"}) {
    if (const char* p = std::getenv(v)) prefixes.push_back(std::string(p) + "/lib");
  }
  if (const char* home = std::getenv("HOME")) prefixes.push_back(std::string(home) + "/.local/lib");
  prefixes.push_back("/usr/local/lib");
  prefixes.push_back("/usr/lib");
  for (const std::string& prefix : prefixes) {
    for (const std::string& py : pythons(prefix)) {
      for (const char* packages : {"site-packages", "dist-packages"}) {
        for (const std::string& wheel : spec.wheels) {
          const std::string f = py + "/" + packages + "/" + wheel;
          if (is_dir(f)) folders.push_back(f);
        }
      }
    }
  }
  return folders;
}

Library open_library(const LibrarySpec& spec) {
  Library lib;
  std::string why;
  if (const char* chosen = std::getenv(spec.variable.c_str()); chosen != nullptr && *chosen != '\0') {
    const bool ok = try_open(chosen, spec, lib.handle_, lib.symbols_, why);
    LF_CHECK(ok, spec.name << ": cannot load " << chosen << " (named by " << spec.variable << "): " << why);
    lib.path_ = chosen;
    return lib;
  }
  std::ostringstream report;
  int found = 0;
  for (const std::string& folder : library_folders(spec)) {
    for (const std::string& file : spec.files) {
      const std::string p = folder + "/" + file;
      if (!is_file(p)) continue;
      found++;
      if (try_open(p, spec, lib.handle_, lib.symbols_, why)) {
        lib.path_ = p;
        return lib;
      }
      report << "\n  " << p << ": " << why;
    }
  }
  std::ostringstream files;
  for (size_t i = 0; i < spec.files.size(); i++) files << (i ? ", " : "") << spec.files[i];
  std::ostringstream where;
  where << spec.variable << " (unset), LORAFLOW_CUDA_LIBS (" << (std::getenv("LORAFLOW_CUDA_LIBS") ? std::getenv("LORAFLOW_CUDA_LIBS") : "unset") << "), LD_LIBRARY_PATH ("
        << (std::getenv("LD_LIBRARY_PATH") ? std::getenv("LD_LIBRARY_PATH") : "unset") << "), /usr/local/cuda/lib64 and the system's library folders, and Python site-packages (";
  for (size_t i = 0; i < spec.wheels.size(); i++) where << (i ? ", " : "") << spec.wheels[i];
  where << ")";
  LF_CHECK(false, spec.name << " not found: looked for " << files.str() << " in " << where.str() << (found ? "; these were there but did not load:" + report.str() : ""));
  return lib;
}

}  // namespace loraflow::cuda
