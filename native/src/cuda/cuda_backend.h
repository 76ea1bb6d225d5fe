// cuda_backend.h: the CUDA backend of the program executor (program/backend.h): device memory,
// one stream, cuBLASLt for the base GEMMs and the head, and the phase-split kernels of
// cuda/kernels/ for everything else, on a real GPU (CudaDevice) or the emulated one (EmuDevice,
// with the fake cuBLASLt). The executor counts in bytes (programs read with Units{1}); tensors
// are the plan's: activations in `activations` (bf16, or f32 for an fp32 plan), statistics and
// LoRA intermediates in fp32, LoRA weights and their gradients fp32. check(), which the executor
// calls on every program it is given, refuses one whose operand types are not these.
#pragma once
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "cuda/device.h"
#include "cuda/libs/blas.h"
#include "model/llama_config.h"
#include "program/backend.h"
#include "program/program.h"

namespace loraflow {

namespace cuda {
class CudaBackend;
}

// What kernels of the CUDA backend get as their stream: the backend itself.
struct Stream {
  cuda::CudaBackend* backend = nullptr;
};

namespace cuda {

class CudaBackend final : public Backend<std::byte> {
 public:
  // max_rows: the most rows a micro-batch has (sizes the row tables, allocated here once).
  CudaBackend(Device& device, const LlamaConfig& config, loraflow::DType activations, int64_t max_rows);
  ~CudaBackend() override;

  const char* name() const override { return name_.c_str(); }
  std::byte* allocate(int64_t n) override;
  void release(std::byte* p) override;
  void upload(std::byte* dst, const std::byte* src, int64_t n, loraflow::Stream* stream) override;
  void download(std::byte* dst, const std::byte* src, int64_t n, loraflow::Stream* stream) override;
  loraflow::Stream* stream() override { return &handle_; }
  loraflow::Event* record(loraflow::Stream*) override { return nullptr; }
  void wait(loraflow::Stream*, loraflow::Event*) override {}
  void synchronize(loraflow::Stream*) override;
  const KernelTable<std::byte>& kernels() const override { return table_; }
  const KernelContext<std::byte>& bind_rows(const KernelContext<std::byte>& host) override;
  void finish(const KernelContext<std::byte>& bound, const KernelContext<std::byte>& host) override;

  // Refuses a program whose tensors' types are not those the kernels read and write.
  void check(const ProgramSpec& program, const std::string& where) const override;

  Device& device() { return device_; }
  Stream& cuda_stream() { return *stream_; }
  Blas& blas() { return *blas_; }
  loraflow::DType activations() const { return activations_; }
  // The head's row losses on the device [max_rows], and whether this program wrote them.
  float* row_losses() { return row_loss_; }
  const float* row_scale() const { return row_scale_; }
  const int32_t* seg_end() const { return seg_end_; }
  int64_t longest_example() const { return longest_; }
  void head_ran() { head_ran_ = true; }

 private:
  Device& device_;
  LlamaConfig config_;
  loraflow::DType activations_;
  int64_t max_rows_;
  std::string name_;
  std::unique_ptr<Stream> stream_;
  std::unique_ptr<Blas> blas_;
  loraflow::Stream handle_;
  KernelTable<std::byte> table_{};
  // Row tables on the device, and their host staging (rewritten once the stream has used them).
  void* rows_ = nullptr;
  int32_t *tokens_ = nullptr, *targets_ = nullptr, *seg_start_ = nullptr, *seg_end_ = nullptr, *pos_ = nullptr;
  uint64_t* row_keys_ = nullptr;
  float *row_scale_ = nullptr, *row_loss_ = nullptr, *inv_freq_ = nullptr;
  std::vector<unsigned char> staging_;
  std::vector<float> losses_;
  KernelContext<std::byte> bound_;
  int64_t longest_ = 0;
  bool head_ran_ = false;
};

}  // namespace cuda
}  // namespace loraflow
