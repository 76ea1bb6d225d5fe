// transport.h: how stage workers of one process wait for each other. Point-to-point messages
// follow NCCL's matching rule (messages from one peer on one channel arrive in the order they
// were sent, a receive takes the next one; a send does not wait), and a reducer sums each
// adapter's gradient-norm shares over the stages. Both wait through one Rendezvous, which sees
// every worker's state: when every worker still running is blocked and none of them can be
// woken, the plan has deadlocked, and every worker fails with a message naming what each one
// waits for, instead of hanging. The NCCL transport implements the same interface across
// processes and GPUs.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "core/check.h"

namespace loraflow {

enum class Channel : int { kActivations = 0, kGradients = 1 };

struct Message {
  int64_t tag = 0;            // micro-batch key the sender attached
  std::vector<float> data;    // [T, C]
};

class Rendezvous {
 public:
  explicit Rendezvous(int workers) : waiting_(static_cast<size_t>(workers)), state_(static_cast<size_t>(workers), kRunning) {}

  std::unique_lock<std::mutex> lock() { return std::unique_lock<std::mutex>(mu_); }
  void notify() { cv_.notify_all(); }

  // Blocks worker `w` (lock held) until ready() holds; `what` says what it waits for, should it
  // never come. Throws when another worker failed or the workers deadlocked.
  void wait(std::unique_lock<std::mutex>& lock, int w, const std::string& what, const std::function<bool()>& ready) {
    if (ready()) return;
    waiting_[static_cast<size_t>(w)] = {what, ready};
    state_[static_cast<size_t>(w)] = kBlocked;
    check_deadlock();
    cv_.wait(lock, [&] { return !failure_.empty() || ready(); });
    state_[static_cast<size_t>(w)] = kRunning;
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
        if (waiting_[w].ready()) return;
        blocked = true;
      }
    }
    if (!blocked || !failure_.empty()) return;
    std::ostringstream why;
    why << "the plan deadlocked: every stage waits on another";
    for (size_t w = 0; w < state_.size(); w++) {
      if (state_[w] == kBlocked) why << "; stage " << w << " waits at " << waiting_[w].what;
    }
    failure_ = why.str();
    cv_.notify_all();
  }

  struct Waiting {
    std::string what;
    std::function<bool()> ready;
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

  void send(int from, int to, Channel ch, Message msg) {
    {
      auto lock = rv_.lock();
      queues_[{from, to, static_cast<int>(ch)}].push_back(std::move(msg));
    }
    rv_.notify();
  }

  // The next message from `from`; its tag must be `expected_tag` (the plan's order). `what`
  // names the action, for the message should the plan deadlock.
  Message recv(int from, int to, Channel ch, int64_t expected_tag, const std::string& what) {
    auto lock = rv_.lock();
    auto& q = queues_[{from, to, static_cast<int>(ch)}];
    rv_.wait(lock, to, what, [&] { return !q.empty(); });
    Message m = std::move(q.front());
    q.pop_front();
    LF_CHECK(m.tag == expected_tag, "stage " << to << " at " << what << " received micro-batch " << m.tag << " from stage " << from << ", expected " << expected_tag);
    return m;
  }

 private:
  Rendezvous& rv_;
  std::map<std::tuple<int, int, int>, std::deque<Message>> queues_;
};

// The sum over stages of per-site values of one (adapter, step): an all-reduce among the stage
// workers. Terms are added in site order once all have arrived, so the result does not depend
// on which stage came first, nor on how the sites are split between stages.
class StageReducer {
 public:
  StageReducer(Rendezvous& rv, int stages) : rv_(rv), stages_(stages) {}

  // Posts a stage's terms; does not wait.
  void contribute(int adapter, int64_t step, const std::map<int64_t, double>& by_site) {
    {
      auto lock = rv_.lock();
      auto& slot = slots_[{adapter, step}];
      slot.terms.insert(by_site.begin(), by_site.end());
      if (++slot.arrived == stages_) {
        for (const auto& [site, value] : slot.terms) slot.sum += value;
        slot.done = true;
      }
    }
    rv_.notify();
  }

  // The sum, once every stage has contributed.
  double wait(int stage, int adapter, int64_t step, const std::string& what) {
    auto lock = rv_.lock();
    auto& slot = slots_[{adapter, step}];
    rv_.wait(lock, stage, what, [&] { return slot.done; });
    const double sum = slot.sum;
    if (++slot.left == stages_) slots_.erase({adapter, step});
    return sum;
  }

 private:
  struct Slot {
    std::map<int64_t, double> terms;
    double sum = 0;
    int arrived = 0, left = 0;
    bool done = false;
  };
  Rendezvous& rv_;
  int stages_;
  std::map<std::pair<int, int64_t>, Slot> slots_;
};

}  // namespace loraflow
