#include "cuda/emu_device.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "core/check.h"

namespace loraflow::cuda {

struct EmuDevice::EmuStream final : Stream {
  EmuDevice* device = nullptr;
  std::deque<std::function<void()>> queue;
  int64_t queued = 0, done = 0;  // work items queued and run so far
  bool running = false;          // a thread runs an item of this stream now
  std::thread::id runner;        // which
  std::string error;             // the first failure: the stream runs nothing after it
  lf_emu_stream abi{};
  std::thread server;  // a comm stream's own
  bool stopping = false;
  ~EmuStream() override {
    // Destroying a stream lets its queued work finish first, as cudaStreamDestroy does.
    int64_t until;
    {
      std::lock_guard<std::mutex> lock(device->mu_);
      until = queued;
    }
    try {
      device->drive(*this, until);
    } catch (...) {
    }
    if (server.joinable()) {
      {
        std::lock_guard<std::mutex> lock(device->mu_);
        stopping = true;
      }
      device->progress_.notify_all();
      server.join();
    }
    std::lock_guard<std::mutex> lock(device->mu_);
    auto& all = device->streams_;
    all.erase(std::remove(all.begin(), all.end(), this), all.end());
  }
};

struct EmuDevice::EmuEvent final : Event {
  EmuStream* stream = nullptr;  // of its latest record; null: never recorded
  int64_t position = 0;         // complete once that stream has run this many items
};

// The entry the stand-in libraries call through lf_emu_stream.
struct EmuStreamAccess {
  static void enqueue(void* self, const char* (*fn)(void*), void* arg) {
    auto* s = static_cast<EmuDevice::EmuStream*>(self);
    const std::string where = s->device->describe();
    std::lock_guard<std::mutex> lock(s->device->mu_);
    s->device->enqueue(*s, [fn, arg, where] {
      const char* error = fn(arg);
      LF_CHECK(error == nullptr, where << ": " << error);
    });
  }
  static int in_device(void* self, const void* p, size_t bytes) {
    auto* s = static_cast<EmuDevice::EmuStream*>(self);
    std::lock_guard<std::mutex> lock(s->device->mu_);
    return s->device->inside_allocation(p, bytes) ? 1 : 0;
  }
};

EmuDevice::EmuDevice(Options options) : options_(options) {}

EmuDevice::~EmuDevice() {
  for (auto& [start, bytes] : allocations_) std::free(reinterpret_cast<void*>(start));
}

std::string EmuDevice::describe() const { return "emulated GPU " + std::to_string(options_.ordinal); }

void* EmuDevice::allocate(size_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  const size_t size = std::max<size_t>(256, (bytes + 255) / 256 * 256);
  void* p = std::aligned_alloc(256, size);
  LF_CHECK(p != nullptr, describe() << ": out of memory allocating " << bytes << " bytes");
  std::memset(p, 0xff, size);  // NaN in fp32 and bf16
  allocations_[reinterpret_cast<uintptr_t>(p)] = bytes;
  return p;
}

void EmuDevice::release(void* p) {
  if (p == nullptr) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    LF_CHECK(allocations_.count(reinterpret_cast<uintptr_t>(p)) == 1, describe() << ": release of " << p << ", which is not an allocation of this device");
  }
  // As cudaFree, wait for all work queued so far (it may still use the memory).
  drive_all();
  std::lock_guard<std::mutex> lock(mu_);
  std::free(p);
  allocations_.erase(reinterpret_cast<uintptr_t>(p));
}

size_t EmuDevice::allocated_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t n = 0;
  for (auto& [start, bytes] : allocations_) n += bytes;
  return n;
}

std::unique_ptr<EmuDevice::EmuStream> EmuDevice::new_stream() {
  auto s = std::make_unique<EmuStream>();
  s->device = this;
  s->abi = {LF_EMU_STREAM_MAGIC, s.get(), &EmuStreamAccess::enqueue, &EmuStreamAccess::in_device};
  std::lock_guard<std::mutex> lock(mu_);
  streams_.push_back(s.get());
  return s;
}

std::unique_ptr<Stream> EmuDevice::create_stream() { return new_stream(); }

std::unique_ptr<Stream> EmuDevice::create_comm_stream() {
  std::unique_ptr<EmuStream> s = new_stream();
  EmuStream* raw = s.get();
  s->server = std::thread([this, raw] { serve(*raw); });
  return s;
}

// A comm stream's thread: runs whatever is queued, as soon as it is, until the stream goes.
void EmuDevice::serve(EmuStream& s) {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    progress_.wait(lock, [&] { return s.stopping || (s.error.empty() && s.done < s.queued && !s.running); });
    if (s.stopping) return;
    const int64_t until = s.queued;
    lock.unlock();
    try {
      drive(s, until);
    } catch (...) {
      // The stream keeps its error; whoever synchronizes or waits on it gets it.
    }
    lock.lock();
  }
}

std::unique_ptr<Event> EmuDevice::create_event() { return std::make_unique<EmuEvent>(); }

EmuDevice::EmuStream& EmuDevice::own(Stream& s) {
  auto* e = dynamic_cast<EmuStream*>(&s);
  LF_CHECK(e != nullptr && e->device == this, describe() << ": a stream of another device");
  return *e;
}

EmuDevice::EmuEvent& EmuDevice::own(Event& e) {
  auto* x = dynamic_cast<EmuEvent*>(&e);
  LF_CHECK(x != nullptr, describe() << ": an event of another kind of device");
  return *x;
}

void EmuDevice::check_range(const void* p, size_t bytes, const char* what) const {
  const auto a = reinterpret_cast<uintptr_t>(p);
  auto it = allocations_.upper_bound(a);
  if (it != allocations_.begin()) {
    auto prev = std::prev(it);
    if (a < prev->first + prev->second) {
      LF_CHECK(bytes <= prev->first + prev->second - a, describe() << ": " << what << " of " << bytes << " bytes at offset " << a - prev->first << " runs past its allocation of " << prev->second);
      return;
    }
  }
  // Host memory: it must not run into an allocation either.
  LF_CHECK(it == allocations_.end() || a + bytes <= it->first, describe() << ": " << what << " of " << bytes << " bytes runs from host memory into device memory");
}

bool EmuDevice::inside_allocation(const void* p, size_t bytes) const {
  const auto a = reinterpret_cast<uintptr_t>(p);
  auto it = allocations_.upper_bound(a);
  if (it == allocations_.begin()) return false;
  --it;
  return a >= it->first && a - it->first <= it->second && bytes <= it->second - (a - it->first);
}

void EmuDevice::enqueue(EmuStream& s, std::function<void()> work) {
  s.queue.push_back(std::move(work));
  s.queued++;
  progress_.notify_all();
}

void EmuDevice::drive(EmuStream& s, int64_t until) {
  std::unique_lock<std::mutex> lock(mu_);
  const std::thread::id me = std::this_thread::get_id();
  for (;;) {
    if (!s.error.empty()) throw EngineError(s.error);
    if (s.done >= until) return;
    if (s.running) {
      // Waits capture the event's position when queued, so stream waits alone cannot form a
      // cycle; this guards the libraries' work, which may block.
      LF_CHECK(s.runner != me, describe() << ": work on a stream needs that stream's own later work");
      progress_.wait(lock);
      continue;
    }
    s.running = true;
    s.runner = me;
    std::function<void()> work = std::move(s.queue.front());
    s.queue.pop_front();
    lock.unlock();
    std::string failed;
    try {
      work();
    } catch (const std::exception& e) {
      failed = e.what();
      if (failed.empty()) failed = "a work item failed";
    } catch (...) {
      failed = "a work item failed";
    }
    lock.lock();
    s.running = false;
    s.done++;
    if (!failed.empty() && s.error.empty()) s.error = failed;
    progress_.notify_all();
  }
}

// Runs every stream's queued work; a failed stream is left as it is (it runs nothing more).
void EmuDevice::drive_all() {
  for (bool again = true; again;) {
    again = false;
    std::vector<std::pair<EmuStream*, int64_t>> pending;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (EmuStream* s : streams_) {
        if (s->error.empty() && s->done < s->queued) pending.push_back({s, s->queued});
      }
    }
    for (auto& [s, until] : pending) {
      try {
        drive(*s, until);
      } catch (...) {
      }
      again = true;
    }
  }
}

void EmuDevice::copy(void* dst, const void* src, size_t bytes, Stream& stream) {
  std::lock_guard<std::mutex> lock(mu_);
  EmuStream& s = own(stream);
  check_range(dst, bytes, "a copy's destination");
  check_range(src, bytes, "a copy's source");
  enqueue(s, [dst, src, bytes] { std::memmove(dst, src, bytes); });
}

void EmuDevice::fill(void* dst, uint8_t byte, size_t bytes, Stream& stream) {
  std::lock_guard<std::mutex> lock(mu_);
  EmuStream& s = own(stream);
  check_range(dst, bytes, "a fill");
  enqueue(s, [dst, byte, bytes] { std::memset(dst, byte, bytes); });
}

void EmuDevice::record(Event& event, Stream& stream) {
  std::lock_guard<std::mutex> lock(mu_);
  EmuEvent& e = own(event);
  EmuStream& s = own(stream);
  e.stream = &s;
  e.position = s.queued;
}

void EmuDevice::wait(Stream& stream, Event& event) {
  std::lock_guard<std::mutex> lock(mu_);
  EmuStream& s = own(stream);
  EmuEvent& e = own(event);
  if (e.stream == nullptr) return;
  EmuStream* on = e.stream;
  const int64_t position = e.position;
  enqueue(s, [this, on, position] { drive(*on, position); });
}

void EmuDevice::synchronize(Stream& stream) {
  EmuStream& s = own(stream);
  int64_t until;
  {
    std::lock_guard<std::mutex> lock(mu_);
    until = s.queued;
  }
  drive(s, until);
}

bool EmuDevice::query(Stream& stream) {
  EmuStream& s = own(stream);
  std::lock_guard<std::mutex> lock(mu_);
  if (!s.error.empty()) throw EngineError(s.error);
  return s.done == s.queued;
}

void EmuDevice::launch(const Launch& l, Stream& stream) {
  std::lock_guard<std::mutex> lock(mu_);
  EmuStream& s = own(stream);
  LF_CHECK(l.on_harness != nullptr, describe() << ": kernel " << l.name << " has no harness entry");
  std::vector<unsigned char> params(static_cast<const unsigned char*>(l.params), static_cast<const unsigned char*>(l.params) + l.params_size);
  const uint64_t seed = options_.seed + launches_++;
  const ThreadOrder order = options_.order;
  auto run = l.on_harness;
  enqueue(s, [run, params = std::move(params), order, seed] { run(params.data(), order, seed); });
}

void* EmuDevice::native(Stream& stream) { return &own(stream).abi;
}

}  // namespace loraflow::cuda
