// run_file.cc: see run_file.h.
#include "spec/run_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "core/check.h"
#include "spec/json.h"

namespace loraflow::spec {
namespace {

struct File {
  int fd = -1;
  ~File() {
    if (fd >= 0) ::close(fd);
  }
};

// Reads exactly n bytes at `at`.
void read_at(const File& f, void* into, uint64_t n, uint64_t at, const std::string& path) {
  auto* p = static_cast<char*>(into);
  while (n > 0) {
    const ssize_t got = ::pread(f.fd, p, static_cast<size_t>(std::min<uint64_t>(n, 1 << 30)), static_cast<off_t>(at));
    LF_CHECK(got > 0, path << ": cannot read " << n << " bytes at byte " << at << " (" << (got == 0 ? "the file ends" : std::strerror(errno)) << ")");
    p += got;
    at += static_cast<uint64_t>(got);
    n -= static_cast<uint64_t>(got);
  }
}

size_t element_bytes(Value::Kind k) { return k == Value::Kind::kF32 || k == Value::Kind::kI32 ? 4 : 8; }

}  // namespace

Value read_run_file(const std::string& path) {
  File f;
  f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  LF_CHECK(f.fd >= 0, path << ": cannot open (" << std::strerror(errno) << ")");
  struct stat st {};
  LF_CHECK(::fstat(f.fd, &st) == 0 && S_ISREG(st.st_mode), path << ": not a regular file");
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  LF_CHECK(size >= 16, path << ": not a run file (" << size << " bytes)");
  char head[16];
  read_at(f, head, 16, 0, path);
  LF_CHECK(std::memcmp(head, kRunFileMagic, 8) == 0, path << ": not a run file (it does not start with " << kRunFileMagic << ")");
  uint64_t header = 0;
  for (int i = 0; i < 8; i++) header |= static_cast<uint64_t>(static_cast<unsigned char>(head[8 + i])) << (8 * i);
  LF_CHECK(header <= size - 16 && header <= (uint64_t(1) << 31), path << ": a header of " << header << " bytes in a file of " << size);
  std::string text(static_cast<size_t>(header), '\0');
  read_at(f, text.data(), header, 16, path);
  const uint64_t data = (16 + header + 63) / 64 * 64;
  const LoadArray load = [&](Value::Kind kind, uint64_t offset, uint64_t length, const std::string& where) {
    const uint64_t bytes = element_bytes(kind);
    LF_CHECK(offset % bytes == 0, where << ": offset " << offset << " is not a multiple of " << bytes);
    LF_CHECK(data <= size && length <= (size - data) / bytes && offset <= size - data - length * bytes,
             where << ": " << length << " values at offset " << offset << " run past the end of the file");
    Value v;
    switch (kind) {
      case Value::Kind::kF32: v = Value::f32(std::vector<float>(static_cast<size_t>(length))); read_at(f, v.f32_data().data(), length * 4, data + offset, path); break;
      case Value::Kind::kF64: v = Value::f64(std::vector<double>(static_cast<size_t>(length))); read_at(f, v.f64_data().data(), length * 8, data + offset, path); break;
      case Value::Kind::kI32: v = Value::i32(std::vector<int32_t>(static_cast<size_t>(length))); read_at(f, v.i32_data().data(), length * 4, data + offset, path); break;
      default: v = Value::u64(std::vector<uint64_t>(static_cast<size_t>(length))); read_at(f, v.u64_data().data(), length * 8, data + offset, path); break;
    }
    return v;
  };
  return parse_json(text, path + "'s header", load);
}

}  // namespace loraflow::spec
