// comm.h: messages and sums between GPUs through NCCL (nccl_api.h), loaded at run time: the real
// library on GPUs, the project's fake (ranks as threads, each on an emulated device) in CI.
// One communicator per rank; operations run in the order of the stream they are queued on.
#pragma once
#include <atomic>
#include <cstddef>
#include <memory>
#include <string>

#include "cuda/device.h"
#include "cuda/libs/library.h"
#include "cuda/libs/nccl_api.h"

namespace loraflow::cuda {

enum class CommType { kBF16, kF32, kF64, kI32 };

// The loaded library, shared by every rank of the process.
class Nccl {
 public:
  Nccl();
  nccl::UniqueId unique_id() const;
  const std::string& library_path() const { return lib_.path(); }
  int version() const { return version_; }
  // Throws with NCCL's words unless r is success.
  void check(nccl::Result r, const char* call) const;

#define LF_FIELD(type, fn) nccl::type fn = nullptr;
  LF_NCCL_SYMBOLS(LF_FIELD)
#undef LF_FIELD

 private:
  Library lib_;
  int version_ = 0;
};

class Comm {
 public:
  // Returns once all `ranks` ranks of `id` have joined.
  Comm(const Nccl& nccl, int ranks, const nccl::UniqueId& id, int rank, Device& device);
  ~Comm();
  Comm(const Comm&) = delete;
  Comm& operator=(const Comm&) = delete;

  int rank() const { return rank_; }
  void send(Stream& s, const void* buf, size_t count, CommType type, int peer);
  void recv(Stream& s, void* buf, size_t count, CommType type, int peer);
  void all_reduce_sum(Stream& s, const void* send, void* recv, size_t count, CommType type);
  // Sends and receives between these two go out together (no deadlock between two ranks that
  // both send and receive).
  void group_start();
  void group_end();
  // Ends the communicator at once, from any thread: operations of any rank still waiting in it
  // fail instead of waiting for a peer that stopped (a failed stage). The communicator is gone.
  void abort();

 private:
  const Nccl& nccl_;
  Device& device_;
  std::atomic<nccl::Comm> comm_{nullptr};  // null once aborted
  int rank_;
};

LibrarySpec nccl_spec();

}  // namespace loraflow::cuda
