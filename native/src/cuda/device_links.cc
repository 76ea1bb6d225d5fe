// device_links.cc: see device_links.h.
#include "cuda/device_links.h"

#include <exception>
#include <string>
#include <thread>

#include "core/check.h"

namespace loraflow::cuda {

namespace {
constexpr size_t kSlotsPerMessage = 2;  // two rounds of a link's messages before training
}

DeviceLinks::DeviceLinks(Rendezvous& rendezvous, std::vector<Device*> device_of_stage, const std::vector<LinkSpec>& links, size_t max_bytes, DType type)
    : rv_(rendezvous), device_of_stage_(std::move(device_of_stage)), max_bytes_(std::max<size_t>(max_bytes, 1)), type_(type) {
  try {
    std::vector<Link*> across;
    for (const LinkSpec& spec : links) {
      LF_CHECK(spec.from >= 0 && spec.to >= 0 && static_cast<size_t>(spec.from) < device_of_stage_.size() && static_cast<size_t>(spec.to) < device_of_stage_.size(),
               "a link from stage " << spec.from << " to stage " << spec.to << " of " << device_of_stage_.size());
      auto l = std::make_unique<Link>();
      l->from = spec.from;
      l->to = spec.to;
      l->sent.device = device_of_stage_[static_cast<size_t>(spec.from)];
      l->received.device = device_of_stage_[static_cast<size_t>(spec.to)];
      l->nccl = l->sent.device != l->received.device;
      std::unique_lock<std::mutex> lock = rv_.lock();
      std::vector<Slot*> made;
      for (size_t i = 0; i < kSlotsPerMessage * spec.messages + 1; i++) made.push_back(take(l->sent));
      for (Slot* s : made) l->sent.free.push_back(s);
      if (l->nccl) {
        made.clear();
        for (size_t i = 0; i < kSlotsPerMessage * spec.messages + 1; i++) made.push_back(take(l->received));
        for (Slot* s : made) l->received.free.push_back(s);
        l->send_stream = l->sent.device->create_comm_stream();
        l->recv_stream = l->received.device->create_comm_stream();
        across.push_back(l.get());
      }
      lock.unlock();
      links_[{spec.from, spec.to, static_cast<int>(spec.channel)}] = std::move(l);
    }
    if (across.empty()) return;
    nccl_ = std::make_unique<Nccl>();
    // Both ranks of a communicator join at once, each from its own thread (its device current).
    std::vector<nccl::UniqueId> ids;
    for (size_t i = 0; i < across.size(); i++) ids.push_back(nccl_->unique_id());
    std::vector<std::string> errors(2 * across.size());
    std::vector<std::thread> joining;
    for (size_t i = 0; i < across.size(); i++) {
      for (int rank = 0; rank < 2; rank++) {
        joining.emplace_back([&, i, rank] {
          try {
            Link& l = *across[i];
            auto comm = std::make_unique<Comm>(*nccl_, 2, ids[i], rank, rank == 0 ? *l.sent.device : *l.received.device);
            (rank == 0 ? l.send_comm : l.recv_comm) = std::move(comm);
          } catch (const std::exception& e) {
            errors[2 * i + static_cast<size_t>(rank)] = e.what();
          }
        });
      }
    }
    for (auto& t : joining) t.join();
    for (const std::string& e : errors) LF_CHECK(e.empty(), "connecting stages across GPUs: " << e);
  } catch (...) {
    abort();
    release_all();
    throw;
  }
}

DeviceLinks::~DeviceLinks() { release_all(); }

void DeviceLinks::release_all() {
  for (auto& [key, l] : links_) {
    // Streams first (each lets its queued work finish), then the slots they read.
    l->send_stream.reset();
    l->recv_stream.reset();
    l->send_comm.reset();
    l->recv_comm.reset();
    for (Pool* pool : {&l->sent, &l->received}) {
      for (auto& slot : pool->slots) {
        try {
          pool->device->release(slot->buf);
        } catch (...) {
        }
      }
      pool->slots.clear();
      pool->free.clear();
    }
  }
  links_.clear();
}

size_t DeviceLinks::across_devices() const {
  size_t n = 0;
  for (auto& [key, l] : links_) n += l->nccl ? 1 : 0;
  return n;
}

DeviceLinks::Link& DeviceLinks::link(int from, int to, Channel ch) {
  auto it = links_.find({from, to, static_cast<int>(ch)});
  LF_CHECK(it != links_.end(), "no link from stage " << from << " to stage " << to);
  return *it->second;
}

DeviceLinks::Slot* DeviceLinks::take(Pool& pool) {
  if (!pool.free.empty()) {
    Slot* s = pool.free.back();
    pool.free.pop_back();
    return s;
  }
  auto slot = std::make_unique<Slot>();
  slot->buf = pool.device->allocate(max_bytes_);
  slot->filled = pool.device->create_event();
  slot->emptied = pool.device->create_event();
  pool.slots.push_back(std::move(slot));
  return pool.slots.back().get();
}

void DeviceLinks::send(int from, int to, Channel ch, int64_t tag, const void* src, size_t bytes, Stream& compute) {
  Link& l = link(from, to, ch);
  LF_CHECK(bytes <= max_bytes_, "stage " << from << " sends " << bytes << " bytes, the links carry " << max_bytes_);
  Slot* slot;
  {
    auto lock = rv_.lock();
    slot = take(l.sent);
  }
  Device& d = *l.sent.device;
  d.wait(compute, *slot->emptied);  // its last reader (never recorded: no wait)
  d.copy(slot->buf, src, bytes, compute);
  d.record(*slot->filled, compute);
  if (l.nccl) {
    d.wait(*l.send_stream, *slot->filled);
    const size_t count = bytes / static_cast<size_t>(dtype_bytes(type_));
    l.send_comm->send(*l.send_stream, slot->buf, count, type_ == DType::kBF16 ? CommType::kBF16 : CommType::kF32, 1);
    d.record(*slot->emptied, *l.send_stream);
  }
  {
    auto lock = rv_.lock();
    l.posted.push_back({tag, bytes, slot});
  }
  rv_.notify();
}

void DeviceLinks::recv(int from, int to, Channel ch, int64_t tag, void* dst, size_t bytes, Stream& compute, const Describe& what) {
  Link& l = link(from, to, ch);
  Message m;
  {
    auto lock = rv_.lock();
    const Ready ready{[](const void* q) { return !static_cast<const std::deque<Message>*>(q)->empty(); }, &l.posted};
    rv_.wait(lock, to, what, ready);
    m = l.posted.front();
    LF_CHECK(m.tag == tag, "stage " << to << " at " << what() << " received micro-batch " << m.tag << " from stage " << from << ", expected " << tag);
    LF_CHECK(m.bytes == bytes, "stage " << to << " at " << what() << " received " << m.bytes << " bytes, expected " << bytes);
    l.posted.pop_front();
  }
  Device& d = *l.received.device;
  if (!l.nccl) {
    d.wait(compute, *m.slot->filled);
    d.copy(dst, m.slot->buf, bytes, compute);
    d.record(*m.slot->emptied, compute);
    auto lock = rv_.lock();
    l.sent.free.push_back(m.slot);
    return;
  }
  Slot* in;
  {
    auto lock = rv_.lock();
    in = take(l.received);
  }
  d.wait(*l.recv_stream, *in->emptied);
  const size_t count = bytes / static_cast<size_t>(dtype_bytes(type_));
  l.recv_comm->recv(*l.recv_stream, in->buf, count, type_ == DType::kBF16 ? CommType::kBF16 : CommType::kF32, 0);
  d.record(*in->filled, *l.recv_stream);
  d.wait(compute, *in->filled);
  d.copy(dst, in->buf, bytes, compute);
  d.record(*in->emptied, compute);
  auto lock = rv_.lock();
  // The sender's slot is reused after its send completes (its emptied event), which needs
  // only this receive, queued now.
  l.sent.free.push_back(m.slot);
  l.received.free.push_back(in);
}

void DeviceLinks::abort() {
  for (auto& [key, l] : links_) {
    if (l->send_comm) l->send_comm->abort();
    if (l->recv_comm) l->recv_comm->abort();
  }
}

}  // namespace loraflow::cuda
