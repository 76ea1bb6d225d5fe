// backend.h: what executes a stage's programs. A backend owns device memory (one allocation per
// arena), streams on which kernels run in order, and events that order one stream after another
// (a send after the forward that wrote its buffer, a forward after the receive that filled its
// input). Kernels come from a table indexed by OpCode; each gets its operands as device pointers.
// The CPU backend runs every kernel on the calling thread, at once: its streams are in order by
// construction and its events are complete when recorded. The CUDA backend queues the same calls.
#pragma once
#include <array>
#include <string>
#include <cstdint>
#include <vector>

#include "model/llama_config.h"
#include "model/lora.h"
#include "model/rows.h"
#include "program/program.h"

namespace loraflow {


// One adapter's LoRA site as an op part sees it: device pointers and the branch's shape.
template <typename S>
struct LoraBinding {
  const S* A = nullptr;  // [r, in]
  const S* B = nullptr;  // [out, r]
  S* dA = nullptr;       // [r, in]
  S* dB = nullptr;       // [out, r]
  ops::LoraSite site;
};

// Everything a kernel reads besides its operands. Row tables are [T]; parts in row order.
template <typename S>
struct KernelContext {
  const LlamaConfig* config = nullptr;
  int64_t T = 0;
  const int32_t* tokens = nullptr;
  const int32_t* targets = nullptr;
  const int32_t* seg_start = nullptr;
  const int32_t* pos = nullptr;
  const uint64_t* row_keys = nullptr;
  const AdapterRows* parts = nullptr;
  size_t part_count = 0;
  const float* inv_freq = nullptr;  // [head_dim / 2]
  double* part_losses = nullptr;    // head_loss adds each part's grad_scale * (sum of its losses)
};

// One op, resolved: pointers in the order of the op's in, out and scratch lists.
template <typename S>
struct KernelCall {
  const OpSpec* op = nullptr;
  const KernelContext<S>* ctx = nullptr;
  S* const* in = nullptr;
  S* const* out = nullptr;
  S* const* scratch = nullptr;
  const int64_t* numel_in = nullptr;  // elements of each input and output (the loader checked them)
  const int64_t* numel_out = nullptr;
  const S* weight = nullptr;
  int64_t weight_rows = 0, weight_cols = 0;  // [out, in] of the weight, or [n] x 1
  const LoraBinding<S>* lora = nullptr;      // one per entry of op->parts
};

struct Stream;
struct Event;

template <typename S>
using Kernel = void (*)(const KernelCall<S>&, Stream*);

template <typename S>
using KernelTable = std::array<Kernel<S>, static_cast<size_t>(OpCode::kCount)>;

template <typename S>
class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  // Device memory for one arena of n scalars, zeroed; freed with release().
  virtual S* allocate(int64_t n) = 0;
  virtual void release(S* p) = 0;
  // Host <-> device copies, ordered on `stream`.
  virtual void upload(S* dst, const S* src, int64_t n, Stream* stream) = 0;
  virtual void download(S* dst, const S* src, int64_t n, Stream* stream) = 0;
  virtual Stream* stream() = 0;
  // An event completes when everything queued on `stream` before it has run.
  virtual Event* record(Stream* stream) = 0;
  virtual void wait(Stream* stream, Event* event) = 0;
  virtual void synchronize(Stream* stream) = 0;
  virtual const KernelTable<S>& kernels() const = 0;
  // The row tables a micro-batch's kernels read, where they can read them: the CPU backend reads
  // the host's own; a device backend copies them over first and points there.
  virtual const KernelContext<S>& bind_rows(const KernelContext<S>& host) { return host; }
  // After a program has run: host.part_losses holds each part's loss (a device backend
  // downloads what its head computed).
  virtual void finish(const KernelContext<S>& bound, const KernelContext<S>& host) {}
  // Refuses a program its kernels cannot run (operand types, say); called by the executor once
  // the program has passed its own checks, so every tensor id is valid.
  virtual void check(const ProgramSpec& program, const std::string& where) const {}
};

}  // namespace loraflow
