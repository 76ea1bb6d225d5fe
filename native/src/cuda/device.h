// device.h: the device under the CUDA backend: memory, streams, events, copies and kernel
// launches. CudaDevice (cuda_device.cc) is a GPU through cudart; EmuDevice (emu_device.h) is
// host memory with lazily run stream queues and the CPU harness for kernels, so that CI runs
// everything but the GPU's instructions. Pointers are device addresses; copies take any
// direction (unified addressing), and everything queued on a stream runs in queue order.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>

#include "cuda/emulate.h"
#include "cuda/launch.h"

namespace loraflow::cuda {

class Stream {
 public:
  virtual ~Stream() = default;
};

class Event {
 public:
  virtual ~Event() = default;
};

// A kernel launch without its type: how to queue it on a GPU (null in a build without nvcc)
// and how to run it on the harness, and its parameters (plain data, copied when queued).
struct Launch {
  int (*on_gpu)(const void* params, void* stream) = nullptr;
  void (*on_harness)(const void* params, ThreadOrder order, uint64_t seed) = nullptr;
  const void* params = nullptr;
  size_t params_size = 0;
  const char* name = "";
};

class Device {
 public:
  virtual ~Device() = default;
  // "GPU 0: NVIDIA H200 (sm_90, 139.8 GiB)" or "emulated GPU 1".
  virtual std::string describe() const = 0;
  virtual bool emulated() const = 0;
  // Device memory of `bytes`, 256-byte aligned; its contents are undefined until written.
  virtual void* allocate(size_t bytes) = 0;
  // Frees what allocate() gave, once all work queued before has run.
  virtual void release(void* p) = 0;
  virtual std::unique_ptr<Stream> create_stream() = 0;
  // A stream for library work that waits on other ranks (NCCL's sends and receives): it makes
  // progress without the host asking. Every stream of a GPU does; the emulated device, whose
  // streams otherwise run only when something needs them, gives this one a thread of its own.
  virtual std::unique_ptr<Stream> create_comm_stream() { return create_stream(); }
  // Makes this device current for the calling thread (what cudart and NCCL calls act on).
  virtual void make_current() {}
  virtual std::unique_ptr<Event> create_event() = 0;
  virtual void copy(void* dst, const void* src, size_t bytes, Stream& stream) = 0;
  virtual void fill(void* dst, uint8_t byte, size_t bytes, Stream& stream) = 0;
  // The event completes when all work queued on `stream` before this call has run.
  virtual void record(Event& event, Stream& stream) = 0;
  // Work queued on `stream` after this call waits for the event's latest record (none: no wait).
  virtual void wait(Stream& stream, Event& event) = 0;
  // Returns when all work queued on `stream` has run; reports the first error of that work.
  virtual void synchronize(Stream& stream) = 0;
  // Whether all work queued on `stream` has run, without waiting or running any (cudaStreamQuery).
  virtual bool query(Stream& stream) = 0;
  virtual void launch(const Launch& launch, Stream& stream) = 0;
  // What libraries take as the stream: a cudaStream_t, or an lf_emu_stream* (emu_abi.h).
  virtual void* native(Stream& stream) = 0;
};

// Queues kernel K (phase.h) on `stream`.
template <typename K>
void launch(Device& device, Stream& stream, const typename K::Params& params, const char* name = "kernel") {
  static_assert(std::is_trivially_copyable<typename K::Params>::value, "kernel parameters must be plain data");
  Launch l;
#if defined(LORAFLOW_HAVE_CUDA)
  l.on_gpu = [](const void* p, void* s) { return cuda::launch<K>(*static_cast<const typename K::Params*>(p), s); };
#endif
  l.on_harness = [](const void* p, ThreadOrder order, uint64_t seed) { emulate<K>(*static_cast<const typename K::Params*>(p), order, seed); };
  l.params = &params;
  l.params_size = sizeof params;
  l.name = name;
  device.launch(l, stream);
}

}  // namespace loraflow::cuda
