// device_test.cc: the emulated device keeps CUDA's stream and event rules and no more, so that
// code which forgets a wait or copies past an allocation fails in CI instead of on a GPU.
#include <chrono>
#include <cmath>
#include <string>
#include <thread>
#include <cstring>
#include <vector>

#include "cases.h"
#include "core/check.h"
#include "cuda/device.h"
#include "cuda/emu_device.h"
#include "cuda/kernels/elementwise.h"
#include "cuda/kernels/rmsnorm.h"

using namespace loraflow::cuda;
using loraflow::test::Case;
using loraflow::test::Outcome;
using loraflow::test::refused;

namespace {

constexpr int64_t kN = 1000;

EmuDevice::Options options() { return {}; }

// Uploads x to `a` on one stream and doubles it into `b` on another (b = a + a): returns b.
std::vector<float> double_on_two_streams(bool with_wait) {
  EmuDevice device(options());
  auto upload = device.create_stream(), compute = device.create_stream();
  auto uploaded = device.create_event();
  std::vector<float> x(kN), y(kN, 0.0f);
  for (int64_t i = 0; i < kN; i++) x[static_cast<size_t>(i)] = static_cast<float>(i);
  auto* a = static_cast<float*>(device.allocate(kN * sizeof(float)));
  auto* b = static_cast<float*>(device.allocate(kN * sizeof(float)));
  device.copy(a, x.data(), kN * sizeof(float), *upload);
  device.record(*uploaded, *upload);
  if (with_wait) device.wait(*compute, *uploaded);
  launch<ElementwiseKernel<float, Elementwise::kAdd>>(device, *compute, {b, a, a, kN});
  device.copy(y.data(), b, kN * sizeof(float), *compute);
  device.synchronize(*compute);
  device.synchronize(*upload);
  device.release(a);
  device.release(b);
  return y;
}

Outcome waits_order_streams() {
  const std::vector<float> y = double_on_two_streams(true);
  for (int64_t i = 0; i < kN; i++) {
    if (y[static_cast<size_t>(i)] != 2.0f * static_cast<float>(i)) return {false, "wrong sum at " + std::to_string(i)};
  }
  return {true, "the kernel waited for the upload"};
}

Outcome missing_wait_reads_stale_memory() {
  const std::vector<float> y = double_on_two_streams(false);
  if (!std::isnan(y[0])) return {false, "the kernel saw the upload it never waited for"};
  return {true, "without the wait the kernel ran first and read fresh (NaN) memory"};
}

Outcome host_copy_runs_only_when_synchronized() {
  EmuDevice device(options());
  auto s = device.create_stream();
  auto* a = static_cast<float*>(device.allocate(sizeof(float)));
  const float one = 1.0f;
  float out = 0.0f;
  device.copy(a, &one, sizeof one, *s);
  device.copy(&out, a, sizeof out, *s);
  if (out != 0.0f) return {false, "a queued copy ran before the stream was synchronized"};
  device.synchronize(*s);
  if (out != 1.0f) return {false, "synchronize did not run the stream's copies in order"};
  return {true, "copies ran in order, at synchronize"};
}

Outcome fresh_memory_is_nan() {
  EmuDevice device(options());
  auto s = device.create_stream();
  auto* a = static_cast<float*>(device.allocate(16 * sizeof(float)));
  std::vector<float> out(16, 0.0f);
  device.copy(out.data(), a, 16 * sizeof(float), *s);
  device.synchronize(*s);
  for (float v : out) {
    if (!std::isnan(v)) return {false, "fresh device memory is not NaN"};
  }
  device.release(a);
  return {device.allocated_bytes() == 0, "fresh memory reads as NaN; release returns it"};
}


Outcome copy_past_allocation_refused() {
  return refused(
      [] {
        EmuDevice device(options());
        auto s = device.create_stream();
        void* a = device.allocate(100);
        std::vector<char> host(200);
        device.copy(a, host.data(), 101, *s);
      },
      "runs past its allocation of 100");
}

Outcome release_of_unknown_pointer_refused() {
  return refused(
      [] {
        EmuDevice device(options());
        int x = 0;
        device.release(&x);
      },
      "not an allocation of this device");
}

Outcome kernel_on_the_device_matches_the_harness() {
  EmuDevice device(options());
  auto s = device.create_stream();
  const int64_t rows = 3, C = 300;
  std::vector<float> x(static_cast<size_t>(rows * C)), w(static_cast<size_t>(C)), y_direct(x.size()), r_direct(static_cast<size_t>(rows));
  for (size_t i = 0; i < x.size(); i++) x[i] = std::sin(static_cast<float>(i));
  for (size_t i = 0; i < w.size(); i++) w[i] = 1.0f + 0.001f * static_cast<float>(i);
  emulate<RmsnormForward<float>>({y_direct.data(), r_direct.data(), x.data(), w.data(), rows, C, 1e-5f}, ThreadOrder::kForward);
  auto* dx = static_cast<float*>(device.allocate(x.size() * 4));
  auto* dw = static_cast<float*>(device.allocate(w.size() * 4));
  auto* dy = static_cast<float*>(device.allocate(x.size() * 4));
  auto* dr = static_cast<float*>(device.allocate(r_direct.size() * 4));
  device.copy(dx, x.data(), x.size() * 4, *s);
  device.copy(dw, w.data(), w.size() * 4, *s);
  launch<RmsnormForward<float>>(device, *s, {dy, dr, dx, dw, rows, C, 1e-5f});
  std::vector<float> y(x.size());
  device.copy(y.data(), dy, y.size() * 4, *s);
  device.synchronize(*s);
  if (std::memcmp(y.data(), y_direct.data(), y.size() * 4) != 0) return {false, "the device's launch differs from the harness run directly"};
  return {true, "same bits as the harness run directly"};
}

// A comm stream runs what is queued on it without the host asking (its own thread does).
Outcome comm_stream_runs_on_its_own() {
  EmuDevice device(options());
  auto s = device.create_comm_stream();
  auto* a = static_cast<float*>(device.allocate(sizeof(float)));
  const float one = 1.0f;
  float out = 0.0f;
  device.copy(a, &one, sizeof one, *s);
  device.copy(&out, a, sizeof(float), *s);
  bool ran = false;
  for (int i = 0; i < 500 && !(ran = device.query(*s)); i++) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ran = ran && out == 1.0f;
  device.synchronize(*s);
  device.release(a);
  return {ran, ran ? "its copies ran before anyone synchronized it" : "nothing ran in 5 s"};
}

// A failed work item fails its stream for good (CUDA's errors are sticky): every later
// synchronize reports it, work queued after it never runs, and a stream waiting on it fails too.
Outcome failure_is_sticky() {
  EmuDevice device(options());
  auto s = device.create_stream(), other = device.create_stream();
  auto failed = device.create_event();
  Launch bad;
  bad.on_harness = [](const void*, ThreadOrder, uint64_t) { LF_CHECK(false, "the kernel failed"); };
  bad.name = "bad";
  float after = 0.0f;
  const float one = 1.0f;
  device.launch(bad, *s);
  device.copy(&after, &one, sizeof one, *s);
  device.record(*failed, *s);
  device.wait(*other, *failed);
  std::vector<std::string> seen;
  for (Stream* x : {s.get(), s.get(), other.get()}) {
    try {
      device.synchronize(*x);
      seen.push_back("");
    } catch (const std::exception& e) {
      seen.push_back(e.what());
    }
  }
  for (const std::string& m : seen) {
    if (m.find("the kernel failed") == std::string::npos) return {false, "a synchronize said: " + (m.empty() ? "nothing" : m)};
  }
  if (after != 0.0f) return {false, "work queued after the failure ran"};
  return {true, "both synchronizes and the waiting stream report: " + seen[0]};
}

void add_cases(std::vector<Case>& cases) {
  cases.push_back({"emu_device.waits_order_streams", waits_order_streams});
  cases.push_back({"emu_device.missing_wait_reads_stale_memory", missing_wait_reads_stale_memory});
  cases.push_back({"emu_device.host_copy_runs_only_when_synchronized", host_copy_runs_only_when_synchronized});
  cases.push_back({"emu_device.fresh_memory_is_nan", fresh_memory_is_nan});
  cases.push_back({"emu_device.copy_past_allocation_refused", copy_past_allocation_refused});
  cases.push_back({"emu_device.release_of_unknown_pointer_refused", release_of_unknown_pointer_refused});
  cases.push_back({"emu_device.kernel_matches_the_harness", kernel_on_the_device_matches_the_harness});
  cases.push_back({"emu_device.comm_stream_runs_on_its_own", comm_stream_runs_on_its_own});
  cases.push_back({"emu_device.failure_is_sticky", failure_is_sticky});
}

const loraflow::test::Register registered(add_cases);

}  // namespace
