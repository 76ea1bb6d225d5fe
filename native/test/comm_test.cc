// comm_test.cc: messages and sums between emulated GPUs through the fake NCCL, rank a thread,
// each on its own emulated device: what arrives, in which order, and that the mistakes NCCL
// punishes on GPUs (both ranks sending first, a receive that does not match its send) fail here
// with a message instead of hanging.
#include <chrono>
#include <cmath>
#include <deque>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "cases.h"
#include "core/check.h"
#include "cuda/emu_device.h"
#include "cuda/libs/comm.h"
#include "env.h"

using namespace loraflow::cuda;
using loraflow::test::Case;
using loraflow::test::Outcome;
using loraflow::test::ScopedEnv;

namespace {

ScopedEnv use_fake() { return ScopedEnv({{"LORAFLOW_NCCL", std::string(LORAFLOW_FAKE_NCCL)}}); }

// What one rank sees: its device, a stream, its communicator.
struct Rank {
  // Host memory a queued copy reads stays alive until the rank is done (copies run later), so
  // it goes before the device and its stream.
  std::deque<std::vector<float>> staged;
  EmuDevice device;
  std::unique_ptr<Stream> stream;
  Comm comm;
  Rank(const Nccl& nccl, int ranks, const nccl::UniqueId& id, int rank) : device({rank}), stream(device.create_stream()), comm(nccl, ranks, id, rank, device) {}

  // A device buffer of n floats holding `values` (uploaded on the stream).
  float* upload(std::vector<float> values) {
    staged.push_back(std::move(values));
    const std::vector<float>& v = staged.back();
    auto* p = static_cast<float*>(device.allocate(v.size() * sizeof(float)));
    device.copy(p, v.data(), v.size() * sizeof(float), *stream);
    return p;
  }
  std::vector<float> download(const float* p, size_t n) {
    std::vector<float> out(n);
    device.copy(out.data(), p, n * sizeof(float), *stream);
    device.synchronize(*stream);
    return out;
  }
};

// Runs body(rank) on `ranks` threads; returns each rank's error ("" when none).
std::vector<std::string> on_ranks(int ranks, const std::function<void(Rank&)>& body) {
  const ScopedEnv env = use_fake();
  const Nccl nccl;
  const nccl::UniqueId id = nccl.unique_id();
  std::vector<std::string> errors(static_cast<size_t>(ranks));
  std::vector<std::thread> threads;
  for (int r = 0; r < ranks; r++) {
    threads.emplace_back([&, r] {
      try {
        Rank rank(nccl, ranks, id, r);
        body(rank);
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(r)] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  return errors;
}

std::vector<float> values_of(int rank, size_t n) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; i++) v[i] = static_cast<float>(rank * 1000 + static_cast<int>(i));
  return v;
}

Outcome ring_of_three() {
  constexpr size_t n = 64;
  std::vector<std::vector<float>> got(3);
  const auto errors = on_ranks(3, [&](Rank& r) {
    const int me = r.comm.rank();
    float* mine = r.upload(values_of(me, n));
    float* theirs = static_cast<float*>(r.device.allocate(n * sizeof(float)));
    r.comm.group_start();
    r.comm.send(*r.stream, mine, n, CommType::kF32, (me + 1) % 3);
    r.comm.recv(*r.stream, theirs, n, CommType::kF32, (me + 2) % 3);
    r.comm.group_end();
    got[static_cast<size_t>(me)] = r.download(theirs, n);
  });
  for (int r = 0; r < 3; r++) {
    if (!errors[static_cast<size_t>(r)].empty()) return {false, "rank " + std::to_string(r) + ": " + errors[static_cast<size_t>(r)]};
    if (got[static_cast<size_t>(r)] != values_of((r + 2) % 3, n)) return {false, "rank " + std::to_string(r) + " got the wrong values"};
  }
  return {true, "each rank got its left neighbour's 64 floats"};
}

Outcome messages_arrive_in_order() {
  std::vector<float> first, second;
  const auto errors = on_ranks(2, [&](Rank& r) {
    float* a = r.upload(values_of(1, 8));
    float* b = r.upload(values_of(2, 8));
    if (r.comm.rank() == 0) {
      r.comm.send(*r.stream, a, 8, CommType::kF32, 1);
      r.comm.send(*r.stream, b, 8, CommType::kF32, 1);
      r.device.synchronize(*r.stream);
    } else {
      r.comm.recv(*r.stream, b, 8, CommType::kF32, 0);
      r.comm.recv(*r.stream, a, 8, CommType::kF32, 0);
      first = r.download(b, 8);
      second = r.download(a, 8);
    }
  });
  if (!errors[0].empty() || !errors[1].empty()) return {false, errors[0] + errors[1]};
  return {first == values_of(1, 8) && second == values_of(2, 8), "the first send is the first receive"};
}

Outcome both_sending_first_is_a_deadlock() {
  const auto errors = on_ranks(2, [&](Rank& r) {
    float* a = r.upload(values_of(r.comm.rank(), 8));
    float* b = static_cast<float*>(r.device.allocate(8 * sizeof(float)));
    r.comm.send(*r.stream, a, 8, CommType::kF32, 1 - r.comm.rank());
    r.comm.recv(*r.stream, b, 8, CommType::kF32, 1 - r.comm.rank());
    r.device.synchronize(*r.stream);
  });
  const std::string expected = "deadlock: every rank waits inside NCCL (rank 0 sends 8 f32 to rank 1; rank 1 sends 8 f32 to rank 0)";
  for (int r = 0; r < 2; r++) {
    if (errors[static_cast<size_t>(r)].find(expected) == std::string::npos) return {false, "rank " + std::to_string(r) + ": " + (errors[static_cast<size_t>(r)].empty() ? "no error" : errors[static_cast<size_t>(r)])};
  }
  return {true, "both ranks report: " + expected};
}

Outcome mismatched_receive_fails_both() {
  const auto errors = on_ranks(2, [&](Rank& r) {
    float* a = r.upload(values_of(0, 8));
    if (r.comm.rank() == 0) r.comm.send(*r.stream, a, 8, CommType::kF32, 1);
    else r.comm.recv(*r.stream, a, 4, CommType::kF32, 0);
    r.device.synchronize(*r.stream);
  });
  const std::string expected = "rank 1 receives 4 f32 from rank 0, which sends 8 f32";
  if (errors[1].find(expected) == std::string::npos || errors[0].find(expected) == std::string::npos) return {false, "rank 0: " + errors[0] + " | rank 1: " + errors[1]};
  return {true, "both ranks report: " + expected};
}

Outcome all_reduce_sums_in_rank_order() {
  std::vector<std::vector<double>> got(3);
  const auto errors = on_ranks(3, [&](Rank& r) {
    std::vector<double> mine = {0.1 * (r.comm.rank() + 1), 1e16, -1e16 + r.comm.rank()};
    auto* send = static_cast<double*>(r.device.allocate(mine.size() * 8));
    auto* recv = static_cast<double*>(r.device.allocate(mine.size() * 8));
    r.device.copy(send, mine.data(), mine.size() * 8, *r.stream);
    r.comm.all_reduce_sum(*r.stream, send, recv, mine.size(), CommType::kF64);
    std::vector<double> out(mine.size());
    r.device.copy(out.data(), recv, out.size() * 8, *r.stream);
    r.device.synchronize(*r.stream);
    got[static_cast<size_t>(r.comm.rank())] = out;
  });
  for (const std::string& e : errors) {
    if (!e.empty()) return {false, e};
  }
  const std::vector<double> want = {0.1 + 0.2 + 0.30000000000000004, 3e16, ((-1e16 + 0) + (-1e16 + 1)) + (-1e16 + 2)};
  for (int r = 0; r < 3; r++) {
    if (got[static_cast<size_t>(r)].size() != 3 || got[static_cast<size_t>(r)][1] != want[1] || got[static_cast<size_t>(r)][2] != want[2] || got[static_cast<size_t>(r)] != got[0]) {
      return {false, "rank " + std::to_string(r) + " got another sum"};
    }
  }
  return {true, "every rank has the same bits, summed rank by rank"};
}
// What deadlocks on one stream works as the trainer's links do it: a communicator per
// direction, each rank with a comm stream on each, so a send and a receive progress apart.
Outcome both_sending_first_on_comm_streams() {
  const ScopedEnv env = use_fake();
  const Nccl nccl;
  const nccl::UniqueId forward = nccl.unique_id(), back = nccl.unique_id();
  std::vector<std::vector<float>> got(2);
  std::vector<std::string> errors(2);
  std::vector<std::thread> threads;
  for (int me = 0; me < 2; me++) {
    threads.emplace_back([&, me] {
      try {
        EmuDevice device({me});
        const std::vector<float> mine = values_of(me, 8);
        std::vector<float> theirs(8);
        auto* a = static_cast<float*>(device.allocate(8 * sizeof(float)));
        auto* b = static_cast<float*>(device.allocate(8 * sizeof(float)));
        // Both ranks join both communicators in one order; rank 0 sends on `forward`, 1 on `back`.
        Comm f(nccl, 2, forward, me, device), k(nccl, 2, back, me, device);
        Comm& out = me == 0 ? f : k;
        Comm& in = me == 0 ? k : f;
        auto s = device.create_stream(), sending = device.create_comm_stream(), receiving = device.create_comm_stream();
        device.copy(a, mine.data(), 8 * sizeof(float), *s);
        device.synchronize(*s);
        out.send(*sending, a, 8, CommType::kF32, 1 - me);
        in.recv(*receiving, b, 8, CommType::kF32, 1 - me);
        device.synchronize(*receiving);
        device.synchronize(*sending);
        device.copy(theirs.data(), b, 8 * sizeof(float), *s);
        device.synchronize(*s);
        got[static_cast<size_t>(me)] = theirs;
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(me)] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  if (!errors[0].empty() || !errors[1].empty()) return {false, errors[0] + errors[1]};
  return {got[0] == values_of(1, 8) && got[1] == values_of(0, 8), "each rank got the other's 8 floats"};
}

// A rank that stops (a failed stage) aborts its communicator: its peer, waiting in a receive on
// a comm stream, fails at once instead of waiting for a send that never comes.
Outcome abort_ends_a_waiting_receive() {
  const auto errors = on_ranks(2, [&](Rank& r) {
    float* b = static_cast<float*>(r.device.allocate(8 * sizeof(float)));
    if (r.comm.rank() == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      r.comm.abort();
      return;
    }
    auto in = r.device.create_comm_stream();
    r.comm.recv(*in, b, 8, CommType::kF32, 0);
    r.device.synchronize(*in);
  });
  const std::string expected = "rank 0 aborted the communicator";
  if (!errors[0].empty() || errors[1].find(expected) == std::string::npos) return {false, "rank 0: " + errors[0] + " | rank 1: " + (errors[1].empty() ? "no error" : errors[1])};
  return {true, "the waiting rank reports: " + expected};
}

void add_cases(std::vector<Case>& cases) {
  cases.push_back({"comm.ring_of_three", ring_of_three});
  cases.push_back({"comm.messages_arrive_in_order", messages_arrive_in_order});
  cases.push_back({"comm.both_sending_first_is_a_deadlock", both_sending_first_is_a_deadlock});
  cases.push_back({"comm.mismatched_receive_fails_both_ranks", mismatched_receive_fails_both});
  cases.push_back({"comm.all_reduce_sums_in_rank_order", all_reduce_sums_in_rank_order});
  cases.push_back({"comm.both_sending_first_on_comm_streams", both_sending_first_on_comm_streams});
  cases.push_back({"comm.abort_ends_a_waiting_receive", abort_ends_a_waiting_receive});
}

const loraflow::test::Register registered(add_cases);

}  // namespace
