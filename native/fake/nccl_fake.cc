// nccl_fake.cc: a stand-in for libnccl built by the project, whose ranks are threads of one
// process, each on its own emulated device. It keeps NCCL's contract where the engine relies
// on it and is strict where NCCL is unforgiving:
//   - ncclCommInitRank returns once every rank of the id has joined;
//   - a send completes only when its receiver takes it (rendezvous, as NCCL does for all but
//     small messages), so two ranks that both send before they receive deadlock here as they
//     would on GPUs; sends and receives between ncclGroupStart and ncclGroupEnd are posted
//     together, as NCCL does;
//   - a receive must match its send's count and type; all ranks of an all-reduce must agree;
//   - when every rank is waiting inside the library the deadlock is reported to all of them
//     (ncclGetErrorString and the stream's error say which operations waited), never a hang.
// Work runs when the emulated stream reaches it (emu_abi.h). Sums go in rank order, so every
// rank gets the same bits.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cuda/emu_abi.h"
#include "cuda/libs/nccl_api.h"

using namespace loraflow::cuda::nccl;

namespace {

constexpr uint64_t kIdMagic = 0x4c464e43434c4944ull;  // "LFNCCLID"
constexpr uint32_t kCommMagic = 0x4c46434d;

size_t type_size(int t) { return t == kBfloat16 ? 2 : t == kFloat64 ? 8 : 4; }
const char* type_name(int t) { return t == kBfloat16 ? "bf16" : t == kFloat32 ? "f32" : t == kFloat64 ? "f64" : t == kInt32 ? "i32" : "?"; }
bool known_type(int t) { return t == kBfloat16 || t == kFloat32 || t == kFloat64 || t == kInt32; }

struct Message {
  const void* buf;
  size_t count;
  int type;
  bool taken = false;
};

struct Reduction {
  std::vector<const void*> send;
  std::vector<void*> recv;
  size_t count = 0;
  int type = 0;
  int posted = 0, done = 0, left = 0;
  std::string mismatch;
};

struct World {
  int n = 0;
  std::mutex mu;
  std::condition_variable cv;
  int joined = 0;
  std::vector<bool> present;
  // Sends from rank a to rank b, oldest first: channels[a * n + b].
  std::vector<std::deque<std::shared_ptr<Message>>> channels;
  std::map<int64_t, Reduction> reductions;  // by each rank's all-reduce count
  std::vector<int64_t> reduced;             // all-reduces each rank has posted
  std::vector<std::string> waiting;         // what each rank waits for ("" when not)
  std::vector<std::function<bool()>> ready_of;  // and whether that has come, while it waits
  int blocked = 0;
  std::string broken;  // a deadlock or a mismatch: every later wait fails with it
};

std::mutex registry_mu;
std::map<uint64_t, std::shared_ptr<World>> registry;
std::atomic<uint64_t> next_key{1};

struct FakeComm {
  uint32_t magic = kCommMagic;
  std::shared_ptr<World> world;
  int rank = 0;
};

thread_local std::string last_error;

Result fail(Result r, const std::string& why) {
  last_error = why;
  return r;
}

// Waits (holding `lock`) until `ready`, as rank `rank` doing `what`; a deadlock when every rank
// waits. Returns an error text, or "" once ready (and the world not broken).
template <typename Ready>
std::string wait_for(World& w, std::unique_lock<std::mutex>& lock, int rank, const std::string& what, Ready&& ready) {
  // A broken world stays broken: what a failed rank does afterwards (its streams run on as
  // they are torn down) must not let the others carry on as if nothing happened.
  if (!w.broken.empty()) return w.broken;
  if (ready()) return "";
  w.waiting[static_cast<size_t>(rank)] = what;
  w.ready_of[static_cast<size_t>(rank)] = ready;
  w.blocked++;
  // Every rank waits, and none for something that has come (it may not have woken yet): no
  // rank can act, so none ever will.
  bool stuck = w.blocked == w.n;
  for (int r = 0; stuck && r < w.n; r++) stuck = !w.ready_of[static_cast<size_t>(r)]();
  if (stuck && w.broken.empty()) {
    std::string all;
    for (int r = 0; r < w.n; r++) all += (r ? "; " : "") + std::string("rank ") + std::to_string(r) + " " + w.waiting[static_cast<size_t>(r)];
    w.broken = "deadlock: every rank waits inside NCCL (" + all + ")";
    w.cv.notify_all();
  }
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(300);
  while (!ready() && w.broken.empty()) {
    if (w.cv.wait_until(lock, give_up) == std::cv_status::timeout) {
      w.blocked--;
      w.waiting[static_cast<size_t>(rank)].clear();
      w.ready_of[static_cast<size_t>(rank)] = nullptr;
      return "rank " + std::to_string(rank) + " " + what + " for 300 s";
    }
  }
  w.blocked--;
  w.waiting[static_cast<size_t>(rank)].clear();
  w.ready_of[static_cast<size_t>(rank)] = nullptr;
  return w.broken;
}

// One operation of a rank, run when its stream reaches it.
struct Op {
  enum Kind { kSend, kRecv, kReduce } kind;
  std::shared_ptr<World> world;
  int rank, peer;
  const void* send;
  void* recv;
  size_t count;
  int type;
};

// Posts the sends of a group, then completes its receives and reductions, then waits for its
// sends to be taken: what NCCL's grouping promises.
const char* run_ops(void* arg) {
  std::unique_ptr<std::vector<Op>> ops(static_cast<std::vector<Op>*>(arg));
  thread_local std::string error;
  error.clear();
  if (ops->empty()) return nullptr;
  World& w = *ops->front().world;
  std::unique_lock<std::mutex> lock(w.mu);
  std::vector<std::pair<const Op*, std::shared_ptr<Message>>> posted;
  for (const Op& op : *ops) {
    if (op.kind != Op::kSend) continue;
    auto m = std::make_shared<Message>(Message{op.send, op.count, op.type});
    w.channels[static_cast<size_t>(op.rank * w.n + op.peer)].push_back(m);
    posted.emplace_back(&op, m);
  }
  w.cv.notify_all();
  for (const Op& op : *ops) {
    if (op.kind == Op::kRecv) {
      auto& channel = w.channels[static_cast<size_t>(op.peer * w.n + op.rank)];
      error = wait_for(w, lock, op.rank, "receives " + std::to_string(op.count) + " " + type_name(op.type) + " from rank " + std::to_string(op.peer), [&] { return !channel.empty(); });
      if (!error.empty()) return error.c_str();
      std::shared_ptr<Message> m = channel.front();
      if (m->count != op.count || m->type != op.type) {
        error = "rank " + std::to_string(op.rank) + " receives " + std::to_string(op.count) + " " + type_name(op.type) + " from rank " + std::to_string(op.peer) + ", which sends " +
                std::to_string(m->count) + " " + type_name(m->type);
        w.broken = error;  // the sender would wait for ever: it fails too
        w.cv.notify_all();
        return error.c_str();
      }
      channel.pop_front();
      std::memcpy(op.recv, m->buf, op.count * type_size(op.type));
      m->taken = true;
      w.cv.notify_all();
    } else if (op.kind == Op::kReduce) {
      const int64_t k = w.reduced[static_cast<size_t>(op.rank)]++;
      Reduction& r = w.reductions[k];
      if (r.posted == 0) {
        r.send.assign(static_cast<size_t>(w.n), nullptr);
        r.recv.assign(static_cast<size_t>(w.n), nullptr);
        r.count = op.count;
        r.type = op.type;
      } else if (r.count != op.count || r.type != op.type) {
        r.mismatch = "all-reduce " + std::to_string(k) + ": rank " + std::to_string(op.rank) + " gives " + std::to_string(op.count) + " " + type_name(op.type) + ", another rank " +
                     std::to_string(r.count) + " " + type_name(r.type);
      }
      r.send[static_cast<size_t>(op.rank)] = op.send;
      r.recv[static_cast<size_t>(op.rank)] = op.recv;
      r.posted++;
      w.cv.notify_all();
      error = wait_for(w, lock, op.rank, "waits in all-reduce " + std::to_string(k), [&] { return r.posted == w.n; });
      if (!error.empty()) return error.c_str();
      if (!r.mismatch.empty()) {
        error = r.mismatch;
        w.broken = error;
        w.cv.notify_all();
        return error.c_str();
      }
      // In rank order, in the type's own precision: every rank the same bits.
      for (size_t i = 0; i < op.count; i++) {
        if (op.type == kFloat64) {
          double s = 0;
          for (int q = 0; q < w.n; q++) s += static_cast<const double*>(r.send[static_cast<size_t>(q)])[i];
          static_cast<double*>(op.recv)[i] = s;
        } else if (op.type == kFloat32) {
          float s = 0;
          for (int q = 0; q < w.n; q++) s += static_cast<const float*>(r.send[static_cast<size_t>(q)])[i];
          static_cast<float*>(op.recv)[i] = s;
        } else if (op.type == kInt32) {
          int32_t s = 0;
          for (int q = 0; q < w.n; q++) s += static_cast<const int32_t*>(r.send[static_cast<size_t>(q)])[i];
          static_cast<int32_t*>(op.recv)[i] = s;
        }
      }
      r.done++;
      w.cv.notify_all();
      // Nobody may reuse a send buffer before every rank has read it.
      error = wait_for(w, lock, op.rank, "waits for the others to finish all-reduce " + std::to_string(k), [&] { return r.done == w.n; });
      if (!error.empty()) return error.c_str();
      // The last rank out lets it go: every other has passed its waits on it.
      if (++r.left == w.n) w.reductions.erase(k);
    }
  }
  for (const auto& entry : posted) {
    const Op* send = entry.first;
    const std::shared_ptr<Message>& m = entry.second;
    error = wait_for(w, lock, send->rank, "sends " + std::to_string(send->count) + " " + type_name(send->type) + " to rank " + std::to_string(send->peer), [&] { return m->taken; });
    if (!error.empty()) return error.c_str();
  }
  return nullptr;
}

// Operations between ncclGroupStart and ncclGroupEnd, per thread.
thread_local int group_depth = 0;
thread_local std::vector<Op>* group_ops = nullptr;
thread_local lf_emu_stream* group_stream = nullptr;

Result submit(const Op& op, void* stream) {
  auto* emu = static_cast<lf_emu_stream*>(stream);
  if (emu == nullptr || emu->magic != LF_EMU_STREAM_MAGIC) return fail(kInvalidArgument, "the fake NCCL runs only on the emulated device's streams");
  const size_t bytes = op.count * type_size(op.type);
  if (op.send && !emu->in_device(emu->self, op.send, bytes)) return fail(kInvalidArgument, "a send buffer is not inside one allocation of the device");
  if (op.recv && !emu->in_device(emu->self, op.recv, bytes)) return fail(kInvalidArgument, "a receive buffer is not inside one allocation of the device");
  if (group_depth > 0) {
    if (group_stream && group_stream != emu) return fail(kInvalidUsage, "operations of one group on different streams");
    group_stream = emu;
    group_ops->push_back(op);
    return kSuccess;
  }
  emu->enqueue(emu->self, run_ops, new std::vector<Op>{op});
  return kSuccess;
}

FakeComm* comm_of(Comm c) {
  auto* f = reinterpret_cast<FakeComm*>(c);
  return f != nullptr && f->magic == kCommMagic ? f : nullptr;
}

}  // namespace

extern "C" {

Result ncclGetVersion(int* version) {
  if (version == nullptr) return fail(kInvalidArgument, "ncclGetVersion: null pointer");
  *version = 22800;
  return kSuccess;
}

const char* ncclGetErrorString(Result r) {
  thread_local std::string text;
  text = "fake NCCL error " + std::to_string(r) + (last_error.empty() ? "" : ": " + last_error);
  return text.c_str();
}

Result ncclGetUniqueId(UniqueId* id) {
  if (id == nullptr) return fail(kInvalidArgument, "ncclGetUniqueId: null pointer");
  std::memset(id->internal, 0, sizeof id->internal);
  const uint64_t key = next_key++ ^ (static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) << 20);
  std::memcpy(id->internal, &kIdMagic, 8);
  std::memcpy(id->internal + 8, &key, 8);
  return kSuccess;
}

Result ncclCommInitRank(Comm* comm, int nranks, UniqueId id, int rank) {
  uint64_t magic, key;
  std::memcpy(&magic, id.internal, 8);
  std::memcpy(&key, id.internal + 8, 8);
  if (comm == nullptr || magic != kIdMagic) return fail(kInvalidArgument, "ncclCommInitRank: not an id from ncclGetUniqueId");
  if (nranks < 1 || rank < 0 || rank >= nranks) return fail(kInvalidArgument, "ncclCommInitRank: rank " + std::to_string(rank) + " of " + std::to_string(nranks));
  std::shared_ptr<World> w;
  {
    std::lock_guard<std::mutex> lock(registry_mu);
    auto& slot = registry[key];
    if (!slot) {
      slot = std::make_shared<World>();
      slot->n = nranks;
      slot->present.assign(static_cast<size_t>(nranks), false);
      slot->channels.resize(static_cast<size_t>(nranks * nranks));
      slot->reduced.assign(static_cast<size_t>(nranks), 0);
      slot->waiting.assign(static_cast<size_t>(nranks), "");
      slot->ready_of.assign(static_cast<size_t>(nranks), nullptr);
    }
    w = slot;
  }
  std::unique_lock<std::mutex> lock(w->mu);
  if (w->n != nranks) return fail(kInvalidUsage, "ncclCommInitRank: " + std::to_string(nranks) + " ranks, but the id's first rank said " + std::to_string(w->n));
  if (w->present[static_cast<size_t>(rank)]) return fail(kInvalidUsage, "ncclCommInitRank: rank " + std::to_string(rank) + " joined twice");
  w->present[static_cast<size_t>(rank)] = true;
  w->joined++;
  w->cv.notify_all();
  if (!w->cv.wait_for(lock, std::chrono::seconds(300), [&] { return w->joined == w->n; })) return fail(kSystemError, "ncclCommInitRank: the other ranks did not join within 300 s");
  auto* c = new FakeComm();
  c->world = w;
  c->rank = rank;
  *comm = reinterpret_cast<Comm>(c);
  return kSuccess;
}

Result ncclCommDestroy(Comm comm) {
  FakeComm* c = comm_of(comm);
  if (c == nullptr) return fail(kInvalidArgument, "ncclCommDestroy: not a communicator");
  c->magic = 0;
  delete c;
  return kSuccess;
}

// Breaks the world: every rank waiting in it, or waiting later, fails with why.
Result ncclCommAbort(Comm comm) {
  FakeComm* c = comm_of(comm);
  if (c == nullptr) return fail(kInvalidArgument, "ncclCommAbort: not a communicator");
  {
    std::lock_guard<std::mutex> lock(c->world->mu);
    if (c->world->broken.empty()) c->world->broken = "rank " + std::to_string(c->rank) + " aborted the communicator";
  }
  c->world->cv.notify_all();
  c->magic = 0;
  delete c;
  return kSuccess;
}

Result ncclSend(const void* buf, size_t count, int type, int peer, Comm comm, void* stream) {
  FakeComm* c = comm_of(comm);
  if (c == nullptr) return fail(kInvalidArgument, "ncclSend: not a communicator");
  if (!known_type(type) || peer < 0 || peer >= c->world->n || peer == c->rank || buf == nullptr) return fail(kInvalidArgument, "ncclSend: a bad type, peer or buffer");
  return submit(Op{Op::kSend, c->world, c->rank, peer, buf, nullptr, count, type}, stream);
}

Result ncclRecv(void* buf, size_t count, int type, int peer, Comm comm, void* stream) {
  FakeComm* c = comm_of(comm);
  if (c == nullptr) return fail(kInvalidArgument, "ncclRecv: not a communicator");
  if (!known_type(type) || peer < 0 || peer >= c->world->n || peer == c->rank || buf == nullptr) return fail(kInvalidArgument, "ncclRecv: a bad type, peer or buffer");
  return submit(Op{Op::kRecv, c->world, c->rank, peer, nullptr, buf, count, type}, stream);
}

Result ncclAllReduce(const void* send, void* recv, size_t count, int type, int op, Comm comm, void* stream) {
  FakeComm* c = comm_of(comm);
  if (c == nullptr) return fail(kInvalidArgument, "ncclAllReduce: not a communicator");
  if (op != kSum || type == kBfloat16 || !known_type(type) || send == nullptr || recv == nullptr) return fail(kInvalidArgument, "ncclAllReduce: only sums of f32, f64 or i32");
  return submit(Op{Op::kReduce, c->world, c->rank, -1, send, recv, count, type}, stream);
}

Result ncclGroupStart() {
  if (group_depth++ == 0) {
    group_ops = new std::vector<Op>();
    group_stream = nullptr;
  }
  return kSuccess;
}

Result ncclGroupEnd() {
  if (group_depth == 0) return fail(kInvalidUsage, "ncclGroupEnd without ncclGroupStart");
  if (--group_depth > 0) return kSuccess;
  std::vector<Op>* ops = group_ops;
  group_ops = nullptr;
  if (ops->empty() || group_stream == nullptr) {
    delete ops;
    return kSuccess;
  }
  group_stream->enqueue(group_stream->self, run_ops, ops);
  return kSuccess;
}

}  // extern "C"
