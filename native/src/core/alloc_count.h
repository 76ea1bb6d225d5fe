// alloc_count.h: counts heap allocations a thread makes while it says so, to prove that a stage
// worker's training loop allocates nothing. The addon replaces operator new within itself (the
// rest of the process is unaffected); sanitized builds keep the sanitizer's, and count nothing.
#pragma once
#include <cstdint>

namespace loraflow::alloc {

// Whether counting works in this build.
bool available();
// Starts or stops counting this thread's allocations.
void count_this_thread(bool on);
// Allocations counted so far, over all threads.
int64_t counted();

// Counting paused for a scope (a progress report, a checkpoint: they allocate by design).
class Pause {
 public:
  Pause();
  ~Pause();
  Pause(const Pause&) = delete;
  Pause& operator=(const Pause&) = delete;

 private:
  bool was_;
};

}  // namespace loraflow::alloc
