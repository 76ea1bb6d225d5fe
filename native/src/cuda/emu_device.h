// emu_device.h: a GPU made of host memory, for CI. Work queued on a stream does not run when it
// is queued: it runs only when something needs it (the host synchronizes that stream, or work
// on another stream waits for an event recorded after it). So a consumer that forgot to wait
// for its producer runs before it and reads stale data, which a test sees; on a real GPU the
// same bug mostly goes unnoticed. Fresh memory is NaN bytes; copies must lie wholly inside one
// allocation or wholly outside all of them (host memory); kernels run on the CPU harness in
// the thread order asked for. Thread-safe: stages sharing a device may call from their threads.
// Work runs outside the device's lock, one thread at a time per stream (a thread that needs a
// stream another is running waits for it), so that library work which blocks on another rank
// (a fake NCCL receive) holds up only what depends on it, as on a GPU. A comm stream
// (create_comm_stream) is run by a thread of its own as soon as work is queued on it. A failed
// work item fails its stream for good, as CUDA's errors are sticky: every later synchronize or
// wait on it reports the first error. Its streams and events must go before it does.
#pragma once
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "cuda/device.h"
#include "cuda/emu_abi.h"

namespace loraflow::cuda {

class EmuDevice final : public Device {
 public:
  struct Options {
    int ordinal = 0;
    ThreadOrder order = ThreadOrder::kShuffled;
    uint64_t seed = 1;
  };
  explicit EmuDevice(Options options);
  ~EmuDevice() override;

  std::string describe() const override;
  bool emulated() const override { return true; }
  void* allocate(size_t bytes) override;
  void release(void* p) override;
  std::unique_ptr<Stream> create_stream() override;
  std::unique_ptr<Stream> create_comm_stream() override;
  std::unique_ptr<Event> create_event() override;
  void copy(void* dst, const void* src, size_t bytes, Stream& stream) override;
  void fill(void* dst, uint8_t byte, size_t bytes, Stream& stream) override;
  void record(Event& event, Stream& stream) override;
  void wait(Stream& stream, Event& event) override;
  void synchronize(Stream& stream) override;
  bool query(Stream& stream) override;
  void launch(const Launch& launch, Stream& stream) override;
  void* native(Stream& stream) override;

  // Bytes allocated and not yet released.
  size_t allocated_bytes() const;

 private:
  struct EmuStream;
  struct EmuEvent;
  std::unique_ptr<EmuStream> new_stream();
  // Lock held.
  void enqueue(EmuStream& s, std::function<void()> work);
  // Runs s's work up to item `until`; takes the lock itself (not held on entry).
  void drive(EmuStream& s, int64_t until);
  void drive_all();
  void serve(EmuStream& s);  // a comm stream's thread
  // Throws unless [p, p + bytes) is inside one allocation or outside all of them.
  void check_range(const void* p, size_t bytes, const char* what) const;
  bool inside_allocation(const void* p, size_t bytes) const;
  EmuStream& own(Stream& s);
  EmuEvent& own(Event& e);

  Options options_;
  mutable std::mutex mu_;
  std::condition_variable progress_;  // a stream ran an item, failed, or got work
  std::map<uintptr_t, size_t> allocations_;  // start -> bytes
  std::vector<EmuStream*> streams_;
  uint64_t launches_ = 0;
  friend struct EmuStreamAccess;
};

}  // namespace loraflow::cuda
