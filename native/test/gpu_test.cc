// gpu_test.cc: what only a GPU shows, run by bench/gpu/check.sh (`loraflow_native_tests --gpu`):
// each kernel on GPU 0 against the CPU harness on the same inputs, and the real cuBLASLt
// against the project's fake on the GEMM shapes the programs use. The GPU contracts
// multiply-adds and sums in its own order, so results agree to fp32 rounding (1e-5 of the
// largest value), and bf16 results to one bf16 rounding more (2 * 2^-8).
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <vector>

#include "cases.h"
#include "core/check.h"
#include "cuda/cuda_device.h"
#include "cuda/emu_device.h"
#include "cuda/kernels/attention.h"
#include "cuda/kernels/cross_entropy.h"
#include "cuda/kernels/elementwise.h"
#include "cuda/kernels/optimizer.h"
#include "cuda/kernels/rmsnorm.h"
#include "cuda/libs/blas.h"
#include "cuda/lora_segments.h"
#include "env.h"
#include "kernel_check.h"
#include "model/dropout.h"
#include "model/ops.h"

using namespace loraflow;
using namespace loraflow::cuda;
using loraflow::test::Case;
using loraflow::test::Outcome;
using loraflow::test::ScopedEnv;
using namespace loraflow::test::kernels;

namespace {

// Host vectors mirrored on GPU 0.
struct Gpu {
  std::unique_ptr<Device> device = open_cuda_device(0);
  std::unique_ptr<Stream> stream = device->create_stream();
  std::vector<void*> owned;
  ~Gpu() {
    for (void* p : owned) device->release(p);
  }
  template <typename T>
  T* put(const std::vector<T>& host) {
    void* p = device->allocate(std::max<size_t>(1, host.size() * sizeof(T)));
    owned.push_back(p);
    device->copy(p, host.data(), host.size() * sizeof(T), *stream);
    return static_cast<T*>(p);
  }
  template <typename T>
  std::vector<T> get(const T* p, size_t n) {
    std::vector<T> out(n);
    device->copy(out.data(), p, n * sizeof(T), *stream);
    device->synchronize(*stream);
    return out;
  }
};

Outcome compare(const std::vector<double>& gpu, const std::vector<double>& harness, double tol, const std::string& what) {
  if (gpu.size() != harness.size()) return {false, what + ": sizes differ"};
  double scale = 0, err = 0;
  for (size_t i = 0; i < gpu.size(); i++) {
    if (std::isnan(gpu[i]) != std::isnan(harness[i])) return {false, what + ": NaN at " + std::to_string(i)};
    scale = std::max(scale, std::fabs(harness[i]));
    err = std::max(err, std::fabs(gpu[i] - harness[i]));
  }
  const double rel = scale == 0 ? err : err / scale;
  char buf[200];
  std::snprintf(buf, sizeof buf, "%s: GPU against harness %.3g of max %.3g (tolerance %.3g)", what.c_str(), rel, scale, tol);
  return {rel <= tol, buf};
}

constexpr double kF32 = 1e-5, kBF16 = 2.0 / 256;

Outcome rmsnorm() {
  Gpu g;
  Rng rng(1);
  const int64_t rows = 64, C = 4096;
  auto x = random_values<bf16>(static_cast<size_t>(rows * C), -2, 2, rng), w = random_values<bf16>(static_cast<size_t>(C), 0.5, 1.5, rng);
  std::vector<bf16> y(x.size());
  std::vector<float> r(static_cast<size_t>(rows));
  emulate<RmsnormForward<bf16>>({y.data(), r.data(), x.data(), w.data(), rows, C, 1e-5f}, ThreadOrder::kForward);
  bf16* dy = g.put(std::vector<bf16>(x.size()));
  float* dr = g.put(std::vector<float>(r.size()));
  launch<RmsnormForward<bf16>>(*g.device, *g.stream, {dy, dr, g.put(x), g.put(w), rows, C, 1e-5f});
  return compare(widen(g.get(dy, y.size())), widen(y), kBF16, "rmsnorm");
}

Outcome rope_and_swiglu() {
  Gpu g;
  Rng rng(2);
  const int64_t rows = 48, heads = 8, hd = 128;
  auto x = random_values<bf16>(static_cast<size_t>(rows * heads * hd), -2, 2, rng);
  std::vector<int32_t> pos(static_cast<size_t>(rows));
  for (size_t t = 0; t < pos.size(); t++) pos[t] = static_cast<int32_t>(t * 31 % 4000);
  const std::vector<float> freq = ops::rope_inv_freq(hd, 500000.0);
  auto host = x;
  emulate<RopeKernel<bf16>>({host.data(), pos.data(), freq.data(), rows, heads, hd, false}, ThreadOrder::kForward);
  bf16* dx = g.put(x);
  launch<RopeKernel<bf16>>(*g.device, *g.stream, {dx, g.put(pos), g.put(freq), rows, heads, hd, false});
  Outcome o = compare(widen(g.get(dx, x.size())), widen(host), kBF16, "rope");
  if (!o.ok) return o;
  auto up = random_values<bf16>(x.size(), -2, 2, rng);
  std::vector<bf16> out(x.size());
  emulate<SwigluForward<bf16>>({out.data(), x.data(), up.data(), static_cast<int64_t>(x.size())}, ThreadOrder::kForward);
  bf16* dout = g.put(std::vector<bf16>(x.size()));
  launch<SwigluForward<bf16>>(*g.device, *g.stream, {dout, g.put(x), g.put(up), static_cast<int64_t>(x.size())});
  Outcome s = compare(widen(g.get(dout, out.size())), widen(out), kBF16, "swiglu");
  return {s.ok, o.message + "; " + s.message};
}

Outcome lora() {
  Gpu g;
  Rng rng(3);
  const int64_t T = 700, in = 4096, out = 1024;
  const std::vector<int64_t> rows = {300, 256, 144}, ranks = {16, 8, 64};
  auto x = random_values<bf16>(static_cast<size_t>(T * in), -1, 1, rng);
  std::vector<uint64_t> keys(static_cast<size_t>(T));
  for (size_t t = 0; t < keys.size(); t++) keys[t] = dropout_row_key(9, 0, t / 100, t % 100);
  std::vector<std::vector<float>> A, u_host;
  std::vector<LoraPart> host_parts, gpu_parts;
  std::vector<float*> u_gpu;
  const uint64_t* dkeys = g.put(keys);
  int64_t row0 = 0;
  for (size_t i = 0; i < rows.size(); i++) {
    A.push_back(random_values<float>(static_cast<size_t>(ranks[i] * in), -0.05, 0.05, rng));
    u_host.emplace_back(static_cast<size_t>(rows[i] * ranks[i]));
    LoraPart p;
    p.row0 = row0, p.rows = rows[i], p.rank = ranks[i], p.dropout = i == 1 ? 0.1 : 0.0, p.module_key = dropout_module_key(2, 0);
    p.A = A.back().data(), p.u = u_host.back().data(), p.row_keys = keys.data();
    host_parts.push_back(p);
    p.A = g.put(A.back());
    u_gpu.push_back(g.put(std::vector<float>(u_host.back().size())));
    p.u = u_gpu.back(), p.row_keys = dkeys;
    gpu_parts.push_back(p);
    row0 += rows[i];
  }
  const LoraSiteRows host_site{in, out, Storage::kBF16, x.data(), nullptr, nullptr, nullptr};
  lora_shrink_launches(host_site, host_parts.data(), 3, [](const SegmentedGemm::Params& p) { emulate<SegmentedGemm>(p, ThreadOrder::kForward); });
  const LoraSiteRows gpu_site{in, out, Storage::kBF16, g.put(x), nullptr, nullptr, nullptr};
  lora_shrink_launches(gpu_site, gpu_parts.data(), 3, [&](const SegmentedGemm::Params& p) { launch<SegmentedGemm>(*g.device, *g.stream, p); });
  std::vector<double> got, want;
  for (size_t i = 0; i < rows.size(); i++) {
    append(got, widen(g.get(u_gpu[i], u_host[i].size())));
    append(want, widen(u_host[i]));
  }
  return compare(got, want, kF32, "LoRA shrink over three adapters, one with dropout");
}

Outcome attention() {
  Gpu g;
  Rng rng(4);
  AttentionShape s;
  std::vector<int32_t> start, end;
  for (int64_t n : {300, 17, 195}) {
    const int32_t first = static_cast<int32_t>(start.size());
    for (int64_t i = 0; i < n; i++) start.push_back(first), end.push_back(first + static_cast<int32_t>(n));
    s.longest = std::max(s.longest, n);
  }
  s.T = static_cast<int64_t>(start.size()), s.H = 8, s.KV = 2, s.hd = 128;
  const size_t qn = static_cast<size_t>(s.T * s.H * s.hd), kn = static_cast<size_t>(s.T * s.KV * s.hd);
  auto q = random_values<bf16>(qn, -1, 1, rng), k = random_values<bf16>(kn, -1, 1, rng), v = random_values<bf16>(kn, -1, 1, rng);
  std::vector<bf16> out(qn);
  std::vector<float> lse(static_cast<size_t>(s.T * s.H));
  AttentionShape hs = s;
  hs.seg_start = start.data(), hs.seg_end = end.data();
  emulate<AttentionForward<bf16>>({out.data(), lse.data(), q.data(), k.data(), v.data(), hs}, ThreadOrder::kForward);
  AttentionShape gs = s;
  gs.seg_start = g.put(start), gs.seg_end = g.put(end);
  bf16* dout = g.put(std::vector<bf16>(qn));
  float* dlse = g.put(std::vector<float>(lse.size()));
  launch<AttentionForward<bf16>>(*g.device, *g.stream, {dout, dlse, g.put(q), g.put(k), g.put(v), gs});
  Outcome o = compare(widen(g.get(dout, qn)), widen(out), kBF16, "attention forward");
  Outcome l = compare(widen(g.get(dlse, lse.size())), widen(lse), kF32, "its log-sum-exp");
  return {o.ok && l.ok, o.message + "; " + l.message};
}

Outcome cross_entropy() {
  Gpu g;
  Rng rng(5);
  const int64_t rows = 32, V = 32000;
  auto logits = random_values<float>(static_cast<size_t>(rows * V), -8, 8, rng);
  std::vector<int32_t> targets(static_cast<size_t>(rows));
  for (size_t t = 0; t < targets.size(); t++) targets[t] = t % 5 == 4 ? -100 : static_cast<int32_t>(t * 997 % V);
  std::vector<float> scale(static_cast<size_t>(rows), 1.0f / 27), loss(static_cast<size_t>(rows));
  std::vector<bf16> dl(logits.size());
  emulate<CrossEntropyKernel<bf16>>({logits.data(), dl.data(), targets.data(), scale.data(), loss.data(), rows, V}, ThreadOrder::kForward);
  bf16* ddl = g.put(std::vector<bf16>(dl.size()));
  float* dloss = g.put(std::vector<float>(loss.size()));
  launch<CrossEntropyKernel<bf16>>(*g.device, *g.stream, {g.put(logits), ddl, g.put(targets), g.put(scale), dloss, rows, V});
  Outcome a = compare(widen(g.get(dloss, loss.size())), widen(loss), kF32, "cross-entropy loss");
  Outcome b = compare(widen(g.get(ddl, dl.size())), widen(dl), kBF16, "its gradient");
  return {a.ok && b.ok, a.message + "; " + b.message};
}

Outcome adamw() {
  Gpu g;
  Rng rng(6);
  const int64_t n = 100000;
  auto p = random_values<float>(static_cast<size_t>(n), -1, 1, rng), grad = random_values<float>(static_cast<size_t>(n), -0.1, 0.1, rng);
  std::vector<float> m(static_cast<size_t>(n), 0.0f), v(static_cast<size_t>(n), 0.0f);
  OptimizerConfig o;
  o.weight_decay = 0.01;
  const StepScalars s = step_scalars(o, 1e-3, 1, 0.5);
  std::vector<float> hp = p, hg = grad, hm = m, hv = v;
  OptimizerSite hs{hp.data(), hg.data(), hm.data(), hv.data(), n};
  emulate<OptimizerKernel>({&hs, 1, s, n}, ThreadOrder::kForward);
  OptimizerSite ds{g.put(p), g.put(grad), g.put(m), g.put(v), n};
  const OptimizerSite* dsite = g.put(std::vector<OptimizerSite>{ds});
  launch<OptimizerKernel>(*g.device, *g.stream, {dsite, 1, s, n});
  return compare(widen(g.get(ds.p, static_cast<size_t>(n))), widen(hp), kF32, "AdamW step");
}

// The real cuBLASLt (found as check.sh finds it) against the fake on the emulated device.
Outcome blas(int64_t M, int64_t N, int64_t K, bool tb, GemmType c) {
  Rng rng(static_cast<uint64_t>(M + N + K));
  auto a = random_values<bf16>(static_cast<size_t>(M * K), -1, 1, rng), b = random_values<bf16>(static_cast<size_t>(N * K), -1, 1, rng);
  GemmShape g;
  g.ta = false, g.tb = tb, g.M = M, g.N = N, g.K = K, g.ab = GemmType::kBF16, g.c = c, g.lda = K, g.ldb = tb ? K : N, g.ldc = N;
  const size_t cn = static_cast<size_t>(M * N), cb = c == GemmType::kBF16 ? 2 : 4;
  std::vector<unsigned char> fake_out(cn * cb), real_out(cn * cb);
  std::string path;
  {
    const ScopedEnv env({{"LORAFLOW_CUBLASLT", std::string(LORAFLOW_FAKE_CUBLASLT)}});
    EmuDevice emu({});
    auto s = emu.create_stream();
    Blas fake(emu);
    void *da = emu.allocate(a.size() * 2), *db = emu.allocate(b.size() * 2), *dc = emu.allocate(cn * cb);
    emu.copy(da, a.data(), a.size() * 2, *s);
    emu.copy(db, b.data(), b.size() * 2, *s);
    fake.gemm(*s, g, 1.0f, da, db, 0.0f, dc);
    emu.copy(fake_out.data(), dc, fake_out.size(), *s);
    emu.synchronize(*s);
  }
  {
    Gpu gpu;
    Blas real(*gpu.device);
    path = real.library_path();
    const bf16* da = gpu.put(a);
    const bf16* db = gpu.put(b);
    void* dc = gpu.put(std::vector<unsigned char>(cn * cb));
    real.gemm(*gpu.stream, g, 1.0f, da, db, 0.0f, dc);
    gpu.device->copy(real_out.data(), dc, real_out.size(), *gpu.stream);
    gpu.device->synchronize(*gpu.stream);
  }
  auto values = [&](const std::vector<unsigned char>& bytes) {
    std::vector<double> v(cn);
    for (size_t i = 0; i < cn; i++) {
      if (c == GemmType::kBF16) {
        bf16 x;
        std::memcpy(&x, &bytes[i * 2], 2);
        v[i] = to_float(x);
      } else {
        float x;
        std::memcpy(&x, &bytes[i * 4], 4);
        v[i] = x;
      }
    }
    return v;
  };
  return compare(values(real_out), values(fake_out), c == GemmType::kBF16 ? kBF16 : 1e-4,
                 "GEMM [" + std::to_string(M) + ", " + std::to_string(N) + ", " + std::to_string(K) + "] through " + path);
}

void add_cases(std::vector<Case>& cases) {
  cases.push_back({"gpu.kernel.rmsnorm", rmsnorm});
  cases.push_back({"gpu.kernel.rope_and_swiglu", rope_and_swiglu});
  cases.push_back({"gpu.kernel.lora_shrink", lora});
  cases.push_back({"gpu.kernel.attention", attention});
  cases.push_back({"gpu.kernel.cross_entropy", cross_entropy});
  cases.push_back({"gpu.kernel.adamw", adamw});
  // The programs' shapes at Llama-2-7B's width: q/o (x W^T), the MLP, their input gradients, the head.
  cases.push_back({"gpu.blas.q_proj", [] { return blas(1024, 4096, 4096, true, GemmType::kBF16); }});
  cases.push_back({"gpu.blas.gate_proj", [] { return blas(1024, 11008, 4096, true, GemmType::kBF16); }});
  cases.push_back({"gpu.blas.down_proj_dx", [] { return blas(1024, 11008, 4096, false, GemmType::kBF16); }});
  cases.push_back({"gpu.blas.head_logits", [] { return blas(512, 32000, 4096, true, GemmType::kF32); }});
}

const loraflow::test::Register registered(add_cases);

}  // namespace
