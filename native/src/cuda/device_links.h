// device_links.h: activations and gradients between stages on GPUs, with the CPU transport's
// contract (a send does not wait for its receiver; messages on one link arrive in order, tagged
// with their micro-batch) on top of NCCL's stricter one (a send waits for its receive).
//
// A send copies its buffer, on the stage's stream, into a slot of the link, so the compiled
// buffer is free again at once, as the CPU transport's copy frees it. Between stages on one GPU
// (NCCL refuses two ranks on one device) the receiver copies the slot straight into its buffer;
// between GPUs the slot goes out through NCCL, on a comm stream of each side and a two-rank
// communicator of the link's own, into a slot of the receiver's. Events order each copy after
// what it reads and each slot's reuse after its last reader.
//
// The host half of each message (its tag and size) goes through the trainer's Rendezvous, so a
// receive is queued on the GPU only once its send has been: NCCL's send and receive are always
// posted as a pair, a plan that would deadlock fails with the CPU engine's words, and a message
// that does not match the plan is refused before anything reads it. Slots come back to their
// link once the receive has been queued; a link that runs out allocates another (rare: two
// rounds of messages are allocated before training).
#pragma once
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <tuple>
#include <vector>

#include "cuda/device.h"
#include "cuda/libs/comm.h"
#include "program/program.h"
#include "train/stage_engine.h"
#include "train/transport.h"

namespace loraflow::cuda {

class DeviceLinks {
 public:
  // device_of_stage[s]: where stage s runs; messages of up to max_bytes, of `type` elements.
  DeviceLinks(Rendezvous& rendezvous, std::vector<Device*> device_of_stage, const std::vector<LinkSpec>& links, size_t max_bytes, DType type);
  ~DeviceLinks();
  DeviceLinks(const DeviceLinks&) = delete;
  DeviceLinks& operator=(const DeviceLinks&) = delete;

  // On `from`'s thread: queues src[bytes] on its stream `compute`; does not wait for `to`.
  void send(int from, int to, Channel ch, int64_t tag, const void* src, size_t bytes, Stream& compute);
  // On `to`'s thread: waits (through the Rendezvous) for the next message of the link, which
  // must be `tag` of `bytes`, and queues its copy into dst on `compute`.
  void recv(int from, int to, Channel ch, int64_t tag, void* dst, size_t bytes, Stream& compute, const Describe& what);
  // From any thread: every communicator ends, so no comm stream waits for a stage that failed.
  void abort();

  // Links whose stages are on different devices (they go through NCCL).
  size_t across_devices() const;

 private:
  struct Slot {
    void* buf = nullptr;  // [max_bytes] on its device
    std::unique_ptr<Event> filled, emptied;
  };
  struct Pool {
    Device* device = nullptr;
    std::vector<std::unique_ptr<Slot>> slots;
    std::vector<Slot*> free;
  };
  struct Message {
    int64_t tag;
    size_t bytes;
    Slot* slot;
  };
  struct Link {
    int from = 0, to = 0;
    bool nccl = false;
    Pool sent;      // on from's device
    Pool received;  // on to's device (NCCL links)
    std::deque<Message> posted;
    std::unique_ptr<Stream> send_stream, recv_stream;  // comm streams (NCCL links)
    std::unique_ptr<Comm> send_comm, recv_comm;        // ranks 0 (from) and 1 (to)
  };

  Link& link(int from, int to, Channel ch);
  // Lock held: a free slot of the pool (a new one when none is).
  Slot* take(Pool& pool);
  void release_all();

  Rendezvous& rv_;
  std::vector<Device*> device_of_stage_;
  size_t max_bytes_;
  DType type_;
  std::unique_ptr<Nccl> nccl_;  // loaded when a link crosses devices
  std::map<std::tuple<int, int, int>, std::unique_ptr<Link>> links_;
};

}  // namespace loraflow::cuda
