// transport.h: point-to-point messages between stage workers of one process, with NCCL's
// matching rule: messages from one peer on one channel arrive in the order they were sent, and a
// receive takes the next one. A send does not wait; a receive blocks until its message is there.
// The NCCL transport implements the same interface across processes and GPUs.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include "core/check.h"

namespace loraflow {

enum class Channel : int { kActivations = 0, kGradients = 1 };

struct Message {
  int64_t tag = 0;            // micro-batch key the sender attached
  std::vector<float> data;    // [T, C]
};

class InProcessTransport {
 public:
  void send(int from, int to, Channel ch, Message msg) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      LF_CHECK(!aborted_, "transport closed");
      queues_[{from, to, static_cast<int>(ch)}].push_back(std::move(msg));
    }
    cv_.notify_all();
  }

  // The next message from `from`; its tag must be `expected_tag` (the plan's order).
  Message recv(int from, int to, Channel ch, int64_t expected_tag) {
    std::unique_lock<std::mutex> lock(mu_);
    auto& q = queues_[{from, to, static_cast<int>(ch)}];
    cv_.wait(lock, [&] { return aborted_ || !q.empty(); });
    LF_CHECK(!aborted_, "stage " << to << " stopped waiting for stage " << from << ": another stage failed");
    Message m = std::move(q.front());
    q.pop_front();
    LF_CHECK(m.tag == expected_tag, "stage " << to << " expected micro-batch " << expected_tag << " from stage " << from << ", received " << m.tag);
    return m;
  }

  // Wakes every waiting receiver with an error: one failed stage must not leave others blocked.
  void abort() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      aborted_ = true;
    }
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool aborted_ = false;
  std::map<std::tuple<int, int, int>, std::deque<Message>> queues_;
};

// The sum over stages of per-site values of one (adapter, step): an all-reduce among the stage
// workers. Terms are added in site order once all have arrived, so the result does not depend
// on which stage came first, nor on how the sites are split between stages.
class StageReducer {
 public:
  explicit StageReducer(int stages) : stages_(stages) {}

  // Posts a stage's terms; does not wait.
  void contribute(int adapter, int64_t step, const std::map<int64_t, double>& by_site) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto& slot = slots_[{adapter, step}];
      slot.terms.insert(by_site.begin(), by_site.end());
      if (++slot.arrived == stages_) {
        for (const auto& [site, value] : slot.terms) slot.sum += value;
        slot.done = true;
      }
    }
    cv_.notify_all();
  }

  // The sum, once every stage has contributed.
  double wait(int adapter, int64_t step) {
    std::unique_lock<std::mutex> lock(mu_);
    auto& slot = slots_[{adapter, step}];
    cv_.wait(lock, [&] { return aborted_ || slot.done; });
    LF_CHECK(!aborted_, "stopped waiting for the gradient norm of adapter " << adapter << ": another stage failed");
    const double sum = slot.sum;
    if (++slot.left == stages_) slots_.erase({adapter, step});
    return sum;
  }

  void abort() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      aborted_ = true;
    }
    cv_.notify_all();
  }

 private:
  struct Slot {
    std::map<int64_t, double> terms;
    double sum = 0;
    int arrived = 0, left = 0;
    bool done = false;
  };
  int stages_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool aborted_ = false;
  std::map<std::pair<int, int64_t>, Slot> slots_;
};

}  // namespace loraflow
