// transport.h: how stage workers of one process wait for each other. Point-to-point messages
// follow NCCL's matching rule (messages from one peer on one channel arrive in the order they
// were sent, a receive takes the next one; a send does not wait), and a reducer sums each
// adapter's gradient-norm shares over the stages. Both wait through one Rendezvous, which sees
// every worker's state: when every worker still running is blocked and none of them can be
// woken, the plan has deadlocked, and every worker fails with a message naming what each one
// waits for, instead of hanging. Nothing here allocates once training runs: mailboxes and
// reduction slots are sized before it starts, and what a wait is for is described only when a
// message needs it.
#pragma once
#include <algorithm>
#include <array>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "core/check.h"

namespace loraflow {

enum class Channel : int { kActivations = 0, kGradients = 1 };

// A description made only when needed (a deadlock, a mismatch): a function and its argument.
struct Describe {
  std::string (*fn)(const void*) = nullptr;
  const void* arg = nullptr;
  std::string operator()() const { return fn ? fn(arg) : std::string("?"); }
};

// A condition to wait for, the same way.
struct Ready {
  bool (*fn)(const void*) = nullptr;
  const void* arg = nullptr;
  bool operator()() const { return fn(arg); }
};

class Rendezvous {
 public:
  explicit Rendezvous(int workers) : waiting_(static_cast<size_t>(workers)), state_(static_cast<size_t>(workers), kRunning) {}

  std::unique_lock<std::mutex> lock() { return std::unique_lock<std::mutex>(mu_); }
  void notify() { cv_.notify_all(); }

  // Blocks worker `w` (lock held) until ready() holds; `what` says what it waits for, should it
  // never come. Throws when another worker failed or the workers deadlocked.
  void wait(std::unique_lock<std::mutex>& lock, int w, const Describe& what, const Ready& ready) {
    if (ready()) return;
    waiting_[static_cast<size_t>(w)] = {&what, &ready};
    state_[static_cast<size_t>(w)] = kBlocked;
    check_deadlock();
    cv_.wait(lock, [&] { return !failure_.empty() || ready(); });
    state_[static_cast<size_t>(w)] = kRunning;
    waiting_[static_cast<size_t>(w)] = {};
    LF_CHECK(failure_.empty(), failure_);
  }

  // Worker `w` has run its last action: the others may now wait on it forever.
  void finished(int w) {
    std::lock_guard<std::mutex> guard(mu_);
    state_[static_cast<size_t>(w)] = kDone;
    check_deadlock();
  }

  // Wakes every waiting worker with an error: one failed stage must not leave others blocked.
  void abort(const std::string& why) {
    {
      std::lock_guard<std::mutex> guard(mu_);
      if (failure_.empty()) failure_ = why;
    }
    cv_.notify_all();
  }

 private:
  enum State { kRunning, kBlocked, kDone };

  // Lock held. Deadlock: nobody runs, somebody waits, and no waiter's condition holds.
  void check_deadlock() {
    bool blocked = false;
    for (size_t w = 0; w < state_.size(); w++) {
      if (state_[w] == kRunning) return;
      if (state_[w] == kBlocked) {
        if ((*waiting_[w].ready)()) return;
        blocked = true;
      }
    }
    if (!blocked || !failure_.empty()) return;
    std::ostringstream why;
    why << "the plan deadlocked: every stage waits on another";
    for (size_t w = 0; w < state_.size(); w++) {
      if (state_[w] == kBlocked) why << "; stage " << w << " waits at " << (*waiting_[w].what)();
    }
    failure_ = why.str();
    cv_.notify_all();
  }

  struct Waiting {
    const Describe* what = nullptr;
    const Ready* ready = nullptr;
  };
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Waiting> waiting_;
  std::vector<State> state_;
  std::string failure_;
};

class InProcessTransport {
 public:
  explicit InProcessTransport(Rendezvous& rv) : rv_(rv) {}

  // Before training: room for `capacity` messages of up to `floats` each from `from` to `to`.
  // A link that needs more grows (an allocation in the loop: the engine counts them).
  void reserve(int from, int to, Channel ch, size_t capacity, int64_t floats) {
    Mailbox& box = boxes_[{from, to, static_cast<int>(ch)}];
    box.slots.resize(std::max(box.slots.size(), capacity));
    for (auto& s : box.slots) s.data.reserve(static_cast<size_t>(floats));
  }

  // Copies data[n] into the link's next free slot; does not wait for the receiver.
  void send(int from, int to, Channel ch, int64_t tag, const float* data, int64_t n) {
    {
      auto lock = rv_.lock();
      Mailbox& box = box_of(from, to, ch);
      if (box.count == box.slots.size()) {
        // Full: make room in ring order (the messages waiting move to the front).
        std::rotate(box.slots.begin(), box.slots.begin() + static_cast<std::ptrdiff_t>(box.head), box.slots.end());
        box.head = 0;
        box.slots.resize(box.slots.size() * 2 + 1);
      }
      Slot& slot = box.slots[(box.head + box.count) % box.slots.size()];
      slot.tag = tag;
      slot.data.assign(data, data + n);
      box.count++;
    }
    rv_.notify();
  }

  // Waits for the next message from `from`; its tag must be `expected_tag` (the plan's order) and
  // its size n. Copies it to dst[n].
  void recv(int from, int to, Channel ch, int64_t expected_tag, float* dst, int64_t n, const Describe& what) {
    auto lock = rv_.lock();
    Mailbox& box = box_of(from, to, ch);
    const Ready ready{[](const void* b) { return static_cast<const Mailbox*>(b)->count > 0; }, &box};
    rv_.wait(lock, to, what, ready);
    Slot& slot = box.slots[box.head];
    LF_CHECK(slot.tag == expected_tag, "stage " << to << " at " << what() << " received micro-batch " << slot.tag << " from stage " << from << ", expected " << expected_tag);
    LF_CHECK(static_cast<int64_t>(slot.data.size()) == n, "stage " << to << " at " << what() << " received " << slot.data.size() << " values, expected " << n);
    std::copy(slot.data.begin(), slot.data.end(), dst);
    box.head = (box.head + 1) % box.slots.size();
    box.count--;
  }

 private:
  struct Slot {
    int64_t tag = 0;
    std::vector<float> data;  // [T, C]
  };
  // A ring of slots: `count` messages from `head` on.
  struct Mailbox {
    std::vector<Slot> slots;
    size_t head = 0, count = 0;
  };

  Mailbox& box_of(int from, int to, Channel ch) {
    auto it = boxes_.find({from, to, static_cast<int>(ch)});
    LF_CHECK(it != boxes_.end(), "no link from stage " << from << " to stage " << to);
    return it->second;
  }

  Rendezvous& rv_;
  std::map<std::tuple<int, int, int>, Mailbox> boxes_;
};

// The sum over stages of per-site values of one (adapter, step): an all-reduce among the stage
// workers. Terms are added in site order once all have arrived, so the result does not depend
// on which stage came first, nor on how the sites are split between stages. An adapter's next
// step cannot start before every stage has read this one's sum (its STEP waits for it), so two
// slots per adapter, alternating, are enough.
class StageReducer {
 public:
  StageReducer(Rendezvous& rv, int stages) : rv_(rv), stages_(stages) {}

  // Before training: `adapters` adapters over global site ids [0, sites).
  void reserve(int adapters, int64_t sites) {
    slots_.resize(static_cast<size_t>(adapters));
    for (auto& pair : slots_) {
      for (Slot& s : pair) {
        s.terms.assign(static_cast<size_t>(sites), 0.0);
        s.present.assign(static_cast<size_t>(sites), 0);
      }
    }
  }

  // Posts a stage's terms (site id, value); does not wait.
  void contribute(int adapter, int64_t step, const std::pair<int64_t, double>* terms, size_t n) {
    {
      auto lock = rv_.lock();
      Slot& slot = slot_of(adapter, step);
      if (slot.step != step) {
        LF_CHECK(slot.step < 0 || slot.left == stages_, "adapter " << adapter << ": step " << step << " reduces while step " << slot.step << " is still read");
        slot.step = step;
        slot.arrived = slot.left = 0;
        slot.done = false;
        slot.sum = 0;
        std::fill(slot.present.begin(), slot.present.end(), 0);
      }
      for (size_t i = 0; i < n; i++) {
        const auto [site, value] = terms[i];
        LF_CHECK(site >= 0 && static_cast<size_t>(site) < slot.terms.size(), "site " << site << " out of range");
        slot.terms[static_cast<size_t>(site)] = value;
        slot.present[static_cast<size_t>(site)] = 1;
      }
      if (++slot.arrived == stages_) {
        for (size_t s = 0; s < slot.terms.size(); s++) if (slot.present[s]) slot.sum += slot.terms[s];
        slot.done = true;
      }
    }
    rv_.notify();
  }

  // The sum, once every stage has contributed.
  double wait(int stage, int adapter, int64_t step, const Describe& what) {
    auto lock = rv_.lock();
    Slot& slot = slot_of(adapter, step);
    struct Want {
      const Slot* slot;
      int64_t step;
    } want{&slot, step};
    const Ready ready{[](const void* w) {
                        const Want* x = static_cast<const Want*>(w);
                        return x->slot->step == x->step && x->slot->done;
                      },
                      &want};
    rv_.wait(lock, stage, what, ready);
    const double sum = slot.sum;
    slot.left++;
    return sum;
  }

 private:
  struct Slot {
    int64_t step = -1;
    std::vector<double> terms;
    std::vector<char> present;
    double sum = 0;
    int arrived = 0, left = 0;
    bool done = false;
  };
  Slot& slot_of(int adapter, int64_t step) {
    LF_CHECK(adapter >= 0 && static_cast<size_t>(adapter) < slots_.size(), "adapter " << adapter << " out of range");
    return slots_[static_cast<size_t>(adapter)][static_cast<size_t>(step & 1)];
  }

  Rendezvous& rv_;
  int stages_;
  std::vector<std::array<Slot, 2>> slots_;
};

}  // namespace loraflow
