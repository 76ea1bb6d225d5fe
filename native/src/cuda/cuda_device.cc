#include "cuda/cuda_device.h"

#include <cuda_runtime_api.h>

#include <cstdio>

#include "core/check.h"

namespace loraflow::cuda {

namespace {

std::string error_text(cudaError_t e) { return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e); }

#define LF_CUDA(call, what)                                                                  \
  do {                                                                                       \
    const cudaError_t lf_cuda_error_ = (call);                                               \
    LF_CHECK(lf_cuda_error_ == cudaSuccess, describe() << ": " << what << " failed (" << error_text(lf_cuda_error_) << ")"); \
  } while (0)

std::string describe_device(int ordinal) {
  cudaDeviceProp p{};
  if (cudaGetDeviceProperties(&p, ordinal) != cudaSuccess) return "GPU " + std::to_string(ordinal);
  char gib[32];
  std::snprintf(gib, sizeof gib, "%.1f", static_cast<double>(p.totalGlobalMem) / (1024.0 * 1024 * 1024));
  return "GPU " + std::to_string(ordinal) + ": " + std::string(p.name) + " (sm_" + std::to_string(p.major) + std::to_string(p.minor) + ", " + gib + " GiB)";
}

struct CudaStream final : Stream {
  cudaStream_t s = nullptr;
  int ordinal = 0;
  ~CudaStream() override {
    cudaSetDevice(ordinal);
    cudaStreamDestroy(s);
  }
};

struct CudaEvent final : Event {
  cudaEvent_t e = nullptr;
  int ordinal = 0;
  ~CudaEvent() override {
    cudaSetDevice(ordinal);
    cudaEventDestroy(e);
  }
};

class CudaDevice final : public Device {
 public:
  explicit CudaDevice(int ordinal) : ordinal_(ordinal), name_(describe_device(ordinal)) { select(); }

  std::string describe() const override { return name_; }
  bool emulated() const override { return false; }

  void* allocate(size_t bytes) override {
    select();
    void* p = nullptr;
    LF_CUDA(cudaMalloc(&p, bytes == 0 ? 1 : bytes), "cudaMalloc of " << bytes << " bytes");
    return p;
  }
  void release(void* p) override {
    select();
    LF_CUDA(cudaFree(p), "cudaFree");
  }
  std::unique_ptr<Stream> create_stream() override {
    select();
    auto s = std::make_unique<CudaStream>();
    s->ordinal = ordinal_;
    LF_CUDA(cudaStreamCreateWithFlags(&s->s, cudaStreamNonBlocking), "cudaStreamCreate");
    return s;
  }
  std::unique_ptr<Event> create_event() override {
    select();
    auto e = std::make_unique<CudaEvent>();
    e->ordinal = ordinal_;
    LF_CUDA(cudaEventCreateWithFlags(&e->e, cudaEventDisableTiming), "cudaEventCreate");
    return e;
  }
  void copy(void* dst, const void* src, size_t bytes, Stream& stream) override {
    select();
    LF_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, own(stream)), "cudaMemcpyAsync of " << bytes << " bytes");
  }
  void fill(void* dst, uint8_t byte, size_t bytes, Stream& stream) override {
    select();
    LF_CUDA(cudaMemsetAsync(dst, byte, bytes, own(stream)), "cudaMemsetAsync of " << bytes << " bytes");
  }
  void record(Event& event, Stream& stream) override {
    select();
    LF_CUDA(cudaEventRecord(own(event), own(stream)), "cudaEventRecord");
  }
  void wait(Stream& stream, Event& event) override {
    select();
    LF_CUDA(cudaStreamWaitEvent(own(stream), own(event), 0), "cudaStreamWaitEvent");
  }
  void synchronize(Stream& stream) override {
    select();
    LF_CUDA(cudaStreamSynchronize(own(stream)), "a kernel or copy on the stream");
  }
  bool query(Stream& stream) override {
    select();
    const cudaError_t e = cudaStreamQuery(own(stream));
    if (e == cudaErrorNotReady) return false;
    LF_CUDA(e, "a kernel or copy on the stream");
    return true;
  }
  void launch(const Launch& l, Stream& stream) override {
    select();
    LF_CHECK(l.on_gpu != nullptr, name_ << ": kernel " << l.name << " has no GPU build");
    const auto e = static_cast<cudaError_t>(l.on_gpu(l.params, own(stream)));
    LF_CUDA(e, "launching " << l.name);
  }
  void* native(Stream& stream) override { return own(stream); }
  void make_current() override { select(); }

 private:
  void select() const { LF_CUDA(cudaSetDevice(ordinal_), "cudaSetDevice(" << ordinal_ << ")"); }
  cudaStream_t own(Stream& s) const {
    auto* c = dynamic_cast<CudaStream*>(&s);
    LF_CHECK(c != nullptr && c->ordinal == ordinal_, name_ << ": a stream of another device");
    return c->s;
  }
  cudaEvent_t own(Event& e) const {
    auto* c = dynamic_cast<CudaEvent*>(&e);
    LF_CHECK(c != nullptr && c->ordinal == ordinal_, name_ << ": an event of another device");
    return c->e;
  }
  int ordinal_;
  std::string name_;
};

}  // namespace

CudaProbe probe_cuda() {
  CudaProbe probe;
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    probe.problem = "no usable CUDA driver (cudaGetDeviceCount: " + error_text(e) + ")";
    return probe;
  }
  if (count == 0) probe.problem = "the CUDA driver sees no GPU";
  for (int i = 0; i < count; i++) probe.devices.push_back(describe_device(i));
  return probe;
}

std::unique_ptr<Device> open_cuda_device(int ordinal) {
  const CudaProbe probe = probe_cuda();
  LF_CHECK(probe.problem.empty(), "no GPU: " << probe.problem);
  LF_CHECK(ordinal >= 0 && ordinal < static_cast<int>(probe.devices.size()), "no GPU " << ordinal << " (this machine has " << probe.devices.size() << ")");
  return std::make_unique<CudaDevice>(ordinal);
}

}  // namespace loraflow::cuda
