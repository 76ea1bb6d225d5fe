// kernels_test.cc: every CUDA kernel of the engine run on the CPU harness (cuda/emulate.h) against
// model/ops.h in double, on inputs that are exact in the kernel's storage type. Each case runs
// in forward, reverse and shuffled thread order and must give the same bits in all three (a
// difference is a race), no NaN (poisoned memory read before it was written), and an error
// within its tolerance:
//   fp32 storage: 1e-5 of the output's largest magnitude. Sums of up to a few thousand fp32
//     terms in a fixed order stay within ~sqrt(n) * 2^-24 relative, far inside it.
//   bf16 storage: k * 2^-8 of the output's largest magnitude, k the roundings on the way to an
//     output (bf16 keeps 8 significant bits: a rounding is within 2^-8 of the value rounded),
//     plus one for the fp32 work: RMSNorm rounds the norm, then the product (k = 3); SwiGLU silu, then the product
//     (3); sums and backward accumulations once (2); RoPE, as Hugging Face's bf16 ops do, cos
//     (or sin), both products and the sum, of values up to |a| + |b| (k = 2 * 5 = 10).
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "cases.h"
#include "kernel_check.h"
#include "cuda/bf16.h"
#include "cuda/emulate.h"
#include "cuda/kernels/elementwise.h"
#include "cuda/kernels/rmsnorm.h"
#include "model/ops.h"

using namespace loraflow;
using namespace loraflow::cuda;
using loraflow::test::Case;
using loraflow::test::Outcome;
using namespace loraflow::test::kernels;

namespace {

template <typename T>
Outcome rmsnorm_forward(int64_t rows, int64_t C) {
  Rng rng(static_cast<uint64_t>(C));
  const auto x = random_values<T>(static_cast<size_t>(rows * C), -2, 2, rng);
  const auto w = random_values<T>(static_cast<size_t>(C), 0.5, 1.5, rng);
  const double eps = 1e-5;
  std::vector<double> y(x.size()), rstd(static_cast<size_t>(rows));
  ops::rmsnorm_forward(y.data(), rstd.data(), widen(x).data(), widen(w).data(), rows, C, eps);
  std::vector<double> ref = y;
  append(ref, rstd);
  return check(
      [&](ThreadOrder order) {
        auto out = poisoned<T>(x.size());
        auto r = poisoned<float>(static_cast<size_t>(rows));
        emulate<RmsnormForward<T>>({out.data(), r.data(), x.data(), w.data(), rows, C, static_cast<float>(eps)}, order);
        auto got = widen(out);
        append(got, widen(r));
        return got;
      },
      ref, tolerance<T>(3));
}

template <typename T>
Outcome rmsnorm_backward(int64_t rows, int64_t C) {
  Rng rng(static_cast<uint64_t>(C) + 7);
  const auto x = random_values<T>(static_cast<size_t>(rows * C), -2, 2, rng);
  const auto w = random_values<T>(static_cast<size_t>(C), 0.5, 1.5, rng);
  const auto dy = random_values<T>(x.size(), -1, 1, rng);
  const auto dx0 = random_values<T>(x.size(), -1, 1, rng);
  std::vector<double> y(x.size()), rstd(static_cast<size_t>(rows));
  ops::rmsnorm_forward(y.data(), rstd.data(), widen(x).data(), widen(w).data(), rows, C, 1e-5);
  std::vector<float> rstd_f(rstd.begin(), rstd.end());
  std::vector<double> rstd_used(rstd_f.begin(), rstd_f.end());
  std::vector<double> ref = widen(dx0);
  ops::rmsnorm_backward(ref.data(), widen(dy).data(), widen(x).data(), widen(w).data(), rstd_used.data(), rows, C);
  return check(
      [&](ThreadOrder order) {
        auto dx = dx0;
        emulate<RmsnormBackward<T>>({dx.data(), dy.data(), x.data(), w.data(), rstd_f.data(), rows, C}, order);
        return widen(dx);
      },
      ref, tolerance<T>(2));
}

template <typename T>
Outcome embedding(int64_t rows, int64_t C, int64_t V) {
  Rng rng(static_cast<uint64_t>(V));
  const auto wte = random_values<T>(static_cast<size_t>(V * C), -1, 1, rng);
  std::vector<int32_t> tokens(static_cast<size_t>(rows));
  for (auto& t : tokens) t = static_cast<int32_t>(rng.uniform(0, static_cast<double>(V)));
  std::vector<double> ref(static_cast<size_t>(rows * C));
  ops::embedding_forward(ref.data(), tokens.data(), widen(wte).data(), rows, C);
  // A token outside the vocabulary reads nothing and gives zeros.
  tokens.push_back(static_cast<int32_t>(V));
  tokens.push_back(-1);
  ref.resize(static_cast<size_t>((rows + 2) * C), 0.0);
  return check(
      [&](ThreadOrder order) {
        auto out = poisoned<T>(ref.size());
        emulate<EmbeddingKernel<T>>({out.data(), wte.data(), tokens.data(), rows + 2, C, V}, order);
        return widen(out);
      },
      ref, tolerance<T>(1));
}

template <typename T>
Outcome swiglu_forward(int64_t n) {
  Rng rng(static_cast<uint64_t>(n));
  const auto g = random_values<T>(static_cast<size_t>(n), -4, 4, rng);
  const auto u = random_values<T>(static_cast<size_t>(n), -2, 2, rng);
  std::vector<double> ref(static_cast<size_t>(n));
  ops::swiglu_forward(ref.data(), widen(g).data(), widen(u).data(), n);
  return check(
      [&](ThreadOrder order) {
        auto out = poisoned<T>(ref.size());
        emulate<SwigluForward<T>>({out.data(), g.data(), u.data(), n}, order);
        return widen(out);
      },
      ref, tolerance<T>(3));
}

template <typename T>
Outcome swiglu_backward(int64_t n) {
  Rng rng(static_cast<uint64_t>(n) + 3);
  const auto g = random_values<T>(static_cast<size_t>(n), -4, 4, rng);
  const auto u = random_values<T>(static_cast<size_t>(n), -2, 2, rng);
  const auto d = random_values<T>(static_cast<size_t>(n), -1, 1, rng);
  const auto dg0 = random_values<T>(static_cast<size_t>(n), -1, 1, rng);
  const auto du0 = random_values<T>(static_cast<size_t>(n), -1, 1, rng);
  auto dg = widen(dg0), du = widen(du0);
  ops::swiglu_backward(dg.data(), du.data(), widen(d).data(), widen(g).data(), widen(u).data(), n);
  std::vector<double> ref = dg;
  append(ref, du);
  return check(
      [&](ThreadOrder order) {
        auto a = dg0, b = du0;
        emulate<SwigluBackward<T>>({a.data(), b.data(), d.data(), g.data(), u.data(), n}, order);
        auto got = widen(a);
        append(got, widen(b));
        return got;
      },
      ref, tolerance<T>(2));
}

template <typename T>
Outcome rope(int64_t rows, int64_t heads, int64_t hd, bool inverse) {
  Rng rng(static_cast<uint64_t>(rows * heads * hd));
  const auto x = random_values<T>(static_cast<size_t>(rows * heads * hd), -2, 2, rng);
  std::vector<int32_t> pos(static_cast<size_t>(rows));
  for (size_t t = 0; t < pos.size(); t++) pos[t] = static_cast<int32_t>((t * 37) % 3000);
  const std::vector<float> inv_freq = ops::rope_inv_freq(hd, 10000.0);
  std::vector<double> ref = widen(x);
  ops::rope_apply(ref.data(), pos.data(), inv_freq.data(), rows, heads, hd, inverse);
  return check(
      [&](ThreadOrder order) {
        auto v = x;
        emulate<RopeKernel<T>>({v.data(), pos.data(), inv_freq.data(), rows, heads, hd, inverse}, order);
        return widen(v);
      },
      ref, tolerance<T>(10));
}

template <typename T, Elementwise kOp>
Outcome elementwise(int64_t n) {
  Rng rng(static_cast<uint64_t>(n) + static_cast<uint64_t>(kOp));
  const auto a = random_values<T>(static_cast<size_t>(n), -1, 1, rng);
  const auto b = random_values<T>(static_cast<size_t>(n), -1, 1, rng);
  const auto out0 = random_values<T>(static_cast<size_t>(n), -1, 1, rng);
  std::vector<double> ref(static_cast<size_t>(n));
  for (size_t i = 0; i < ref.size(); i++) {
    const double x = to_float(a[i]), y = to_float(b[i]), o = to_float(out0[i]);
    ref[i] = kOp == Elementwise::kCopy ? x : kOp == Elementwise::kAccumulate ? o + x : kOp == Elementwise::kZero ? 0 : x + y;
  }
  return check(
      [&](ThreadOrder order) {
        auto out = kOp == Elementwise::kAccumulate ? out0 : poisoned<T>(ref.size());
        emulate<ElementwiseKernel<T, kOp>>({out.data(), a.data(), b.data(), n}, order);
        return widen(out);
      },
      ref, tolerance<T>(2));
}

// Kernels with the faults the harness exists to find: each must be reported.
struct RacyShift : KernelShape<64, 1> {
  struct Params {
    float* v;
  };
  static Dim3 grid(const Params&) { return {1, 1, 1}; }
  // Reads a neighbour's element in the same phase the neighbour writes it: no barrier between.
  static void run(int, const Params& p, Shared&, Thread&, const At& at) {
    if (at.thread + 1 < kThreads) p.v[at.thread] = p.v[at.thread + 1] + 1;
  }
};

struct UnwrittenShared : KernelShape<64, 2> {
  struct Params {
    float* v;
  };
  struct Shared {
    float s[kThreads];
  };
  struct Thread {};
  static Dim3 grid(const Params&) { return {1, 1, 1}; }
  // Phase 0 fills only the even slots; phase 1 reads every slot.
  static void run(int phase, const Params& p, Shared& sh, Thread&, const At& at) {
    if (phase == 0 && at.thread % 2 == 0) sh.s[at.thread] = 1;
    if (phase == 1) p.v[at.thread] = sh.s[at.thread];
  }
};

template <typename K>
Outcome must_fail(const char* what) {
  const Outcome o = check(
      [](ThreadOrder order) {
        std::vector<float> v(K::kThreads);
        for (size_t i = 0; i < v.size(); i++) v[i] = static_cast<float>(i);
        emulate<K>({v.data()}, order);
        return std::vector<double>(v.begin(), v.end());
      },
      std::vector<double>(K::kThreads, 0.0), 1e9);
  if (o.ok) return {false, std::string("the harness did not notice ") + what};
  return {true, std::string("found: ") + o.message};
}

template <typename T>
void add_typed(std::vector<Case>& cases) {
  const std::string t = type_name<T>();
  cases.push_back({"kernel.rmsnorm_forward." + t + ".C64", [] { return rmsnorm_forward<T>(3, 64); }});
  cases.push_back({"kernel.rmsnorm_forward." + t + ".C1000", [] { return rmsnorm_forward<T>(5, 1000); }});
  cases.push_back({"kernel.rmsnorm_forward." + t + ".C4096", [] { return rmsnorm_forward<T>(2, 4096); }});
  cases.push_back({"kernel.rmsnorm_backward." + t + ".C64", [] { return rmsnorm_backward<T>(3, 64); }});
  cases.push_back({"kernel.rmsnorm_backward." + t + ".C1000", [] { return rmsnorm_backward<T>(5, 1000); }});
  cases.push_back({"kernel.embedding." + t, [] { return embedding<T>(7, 300, 50); }});
  cases.push_back({"kernel.swiglu_forward." + t, [] { return swiglu_forward<T>(1000); }});
  cases.push_back({"kernel.swiglu_backward." + t, [] { return swiglu_backward<T>(1000); }});
  cases.push_back({"kernel.rope." + t + ".hd64", [] { return rope<T>(9, 4, 64, false); }});
  cases.push_back({"kernel.rope_inverse." + t + ".hd64", [] { return rope<T>(9, 4, 64, true); }});
  cases.push_back({"kernel.rope." + t + ".hd128x3", [] { return rope<T>(4, 3, 128, false); }});
  cases.push_back({"kernel.copy." + t, [] { return elementwise<T, Elementwise::kCopy>(777); }});
  cases.push_back({"kernel.accumulate." + t, [] { return elementwise<T, Elementwise::kAccumulate>(777); }});
  cases.push_back({"kernel.zero." + t, [] { return elementwise<T, Elementwise::kZero>(777); }});
  cases.push_back({"kernel.add." + t, [] { return elementwise<T, Elementwise::kAdd>(777); }});
}

void add_cases(std::vector<Case>& cases) {
  add_typed<float>(cases);
  add_typed<bf16>(cases);
  cases.push_back({"harness.finds_a_race", [] { return must_fail<RacyShift>("a race between threads of a phase"); }});
  cases.push_back({"harness.finds_unwritten_shared_memory", [] { return must_fail<UnwrittenShared>("a read of shared memory never written"); }});
}

const loraflow::test::Register registered(add_cases);

}  // namespace

