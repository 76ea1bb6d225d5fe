// fs_binding.cc: `exchangePaths(a, b)`, the one file-system call Node lacks. renameat2 with
// RENAME_EXCHANGE swaps two paths in one step, so a folder loraflow replaces is at every
// instant either its previous complete version or its new one. Where the kernel or the file
// system cannot exchange (not Linux, EINVAL, ENOSYS), it throws with that code and the caller
// falls back to two renames and a recovery step.
#include <napi.h>

#include <cerrno>
#include <cstring>
#include <string>

#ifdef __linux__
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace loraflow {

Napi::Value ExchangePaths(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString()) throw Napi::TypeError::New(env, "exchangePaths(a, b)");
  const std::string a = info[0].As<Napi::String>(), b = info[1].As<Napi::String>();
  int err = ENOSYS;
#if defined(__linux__) && defined(SYS_renameat2) && defined(RENAME_EXCHANGE)
  err = syscall(SYS_renameat2, AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str(), RENAME_EXCHANGE) == 0 ? 0 : errno;
#endif
  if (err == 0) return env.Undefined();
  Napi::Error e = Napi::Error::New(env, std::string("exchangePaths: ") + std::strerror(err));
  const char* names[] = {"EINVAL", "ENOSYS", "ENOENT", "EXDEV", "EACCES", "EPERM", "ENOTDIR", "EISDIR", "EBUSY", "EROFS"};
  const int codes[] = {EINVAL, ENOSYS, ENOENT, EXDEV, EACCES, EPERM, ENOTDIR, EISDIR, EBUSY, EROFS};
  std::string code = "E" + std::to_string(err);
  for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) if (codes[i] == err) code = names[i];
  e.Set("code", Napi::String::New(env, code));
  throw e;
}

}  // namespace loraflow
