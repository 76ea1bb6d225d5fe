// alloc_count.cc: see alloc_count.h. The addon links with -Bsymbolic and is loaded without
// adding its symbols to the process's: calls from this shared library bind to these operators,
// every other library keeps the C++ runtime's. They allocate with malloc as the runtime's do,
// so memory may cross from one to the other.
#include "core/alloc_count.h"

#include <atomic>
#include <cstdlib>
#include <new>

namespace loraflow::alloc {
namespace {
thread_local bool counting = false;
std::atomic<int64_t> total{0};
}  // namespace

#ifndef LORAFLOW_SANITIZE_BUILD
bool available() { return true; }
#else
bool available() { return false; }
#endif
void count_this_thread(bool on) { counting = on; }
int64_t counted() { return total.load(); }
Pause::Pause() : was_(counting) { counting = false; }
Pause::~Pause() { counting = was_; }

void note() {
  if (counting) total.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace loraflow::alloc

#ifndef LORAFLOW_SANITIZE_BUILD

namespace {
void* take(std::size_t n) {
  loraflow::alloc::note();
  void* p = std::malloc(n == 0 ? 1 : n);
  if (!p) throw std::bad_alloc();
  return p;
}
void* take_aligned(std::size_t n, std::align_val_t a) {
  loraflow::alloc::note();
  const std::size_t align = static_cast<std::size_t>(a);
  void* p = std::aligned_alloc(align, (n + align - 1) / align * align);
  if (!p) throw std::bad_alloc();
  return p;
}
}  // namespace

void* operator new(std::size_t n) { return take(n); }
void* operator new[](std::size_t n) { return take(n); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return take(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return take(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new(std::size_t n, std::align_val_t a) { return take_aligned(n, a); }
void* operator new[](std::size_t n, std::align_val_t a) { return take_aligned(n, a); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
#endif
