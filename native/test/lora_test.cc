// lora_test.cc: the fused multi-adapter LoRA operator (cuda/lora_segments.h over
// kernels/segmented_gemm.h) on the CPU harness against model/lora.h in double: three adapters of
// different ranks and dropouts sharing one micro-batch, shapes that are no multiple of the tile,
// fp32 and bf16 activations. Tolerances as in kernels_test.cc: fp32 results (u, G, dA, dB) 1e-5
// of their largest magnitude; bf16 results (y, dx) two roundings, 2 * 2^-8.
#include <vector>

#include "cases.h"
#include "cuda/lora_segments.h"
#include "kernel_check.h"
#include "model/dropout.h"
#include "model/lora.h"

using namespace loraflow;
using namespace loraflow::cuda;
using loraflow::test::Case;
using loraflow::test::Outcome;
using namespace loraflow::test::kernels;

namespace {

constexpr int64_t kIn = 48, kOut = 40;

struct PartShape {
  int64_t rows, rank;
  double dropout;
};
const std::vector<PartShape> kParts = {{5, 4, 0.0}, {37, 8, 0.1}, {3, 2, 0.5}};

// Everything one site of the micro-batch holds, on the host (the harness's device memory).
template <typename T>
struct Fixture {
  int64_t T_rows = 0;
  std::vector<T> x, dy, y0, dx0;
  std::vector<uint64_t> keys;
  std::vector<std::vector<float>> A, B, u, dA0, dB0;
  uint64_t module_key = dropout_module_key(3, 2);

  Fixture() {
    Rng rng(17);
    for (const PartShape& p : kParts) T_rows += p.rows;
    x = random_values<T>(static_cast<size_t>(T_rows * kIn), -1, 1, rng);
    dy = random_values<T>(static_cast<size_t>(T_rows * kOut), -1, 1, rng);
    y0 = random_values<T>(static_cast<size_t>(T_rows * kOut), -1, 1, rng);
    dx0 = random_values<T>(static_cast<size_t>(T_rows * kIn), -1, 1, rng);
    for (int64_t t = 0; t < T_rows; t++) keys.push_back(dropout_row_key(5, 1, static_cast<uint64_t>(t / 7), static_cast<uint64_t>(t % 7)));
    for (const PartShape& p : kParts) {
      A.push_back(random_values<float>(static_cast<size_t>(p.rank * kIn), -0.5, 0.5, rng));
      B.push_back(random_values<float>(static_cast<size_t>(kOut * p.rank), -0.5, 0.5, rng));
      u.push_back(random_values<float>(static_cast<size_t>(p.rows * p.rank), -1, 1, rng));
      dA0.push_back(random_values<float>(static_cast<size_t>(p.rank * kIn), -1, 1, rng));
      dB0.push_back(random_values<float>(static_cast<size_t>(kOut * p.rank), -1, 1, rng));
    }
  }

  ops::LoraSite site(size_t i) const { return {kIn, kOut, kParts[i].rank, scale(i), kParts[i].dropout, module_key}; }
  static float scale(size_t i) { return 2.0f / static_cast<float>(kParts[i].rank); }
  int64_t row0(size_t i) const {
    int64_t r = 0;
    for (size_t j = 0; j < i; j++) r += kParts[j].rows;
    return r;
  }
};

template <typename T>
Storage storage() {
  return sizeof(T) == 2 ? Storage::kBF16 : Storage::kF32;
}

std::vector<double> wide(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

template <typename Launches>
void run_on_harness(ThreadOrder order, Launches&& launches) {
  uint64_t seed = 1;
  launches([&](const SegmentedGemm::Params& p) { emulate<SegmentedGemm>(p, order, seed++); });
}

template <typename T>
Outcome shrink() {
  const Fixture<T> f;
  std::vector<double> ref;
  for (size_t i = 0; i < kParts.size(); i++) {
    std::vector<double> u(static_cast<size_t>(kParts[i].rows * kParts[i].rank)), h(static_cast<size_t>(kParts[i].rows * kIn));
    const std::vector<double> x = widen(f.x);
    ops::lora_shrink(u.data(), x.data() + f.row0(i) * kIn, wide(f.A[i]).data(), f.keys.data() + f.row0(i), kParts[i].rows, f.site(i), h.data());
    append(ref, u);
  }
  return check(
      [&](ThreadOrder order) {
        std::vector<std::vector<float>> u;
        std::vector<LoraPart> parts;
        for (size_t i = 0; i < kParts.size(); i++) {
          u.push_back(poisoned<float>(static_cast<size_t>(kParts[i].rows * kParts[i].rank)));
          LoraPart p;
          p.row0 = f.row0(i), p.rows = kParts[i].rows, p.rank = kParts[i].rank;
          p.A = f.A[i].data(), p.u = u.back().data(), p.dropout = kParts[i].dropout, p.module_key = f.module_key, p.row_keys = f.keys.data();
          parts.push_back(p);
        }
        LoraSiteRows site{kIn, kOut, storage<T>(), f.x.data(), nullptr, nullptr, nullptr};
        run_on_harness(order, [&](auto launch) { lora_shrink_launches(site, parts.data(), static_cast<int>(parts.size()), launch); });
        std::vector<double> got;
        for (auto& ui : u) append(got, wide(ui));
        return got;
      },
      ref, tolerance<float>(1));
}

template <typename T>
Outcome expand() {
  const Fixture<T> f;
  std::vector<double> ref = widen(f.y0);
  for (size_t i = 0; i < kParts.size(); i++) {
    ops::lora_expand(ref.data() + f.row0(i) * kOut, wide(f.u[i]).data(), wide(f.B[i]).data(), kParts[i].rows, f.site(i));
  }
  return check(
      [&](ThreadOrder order) {
        std::vector<T> y = f.y0;
        std::vector<LoraPart> parts;
        std::vector<std::vector<float>> u = f.u;
        for (size_t i = 0; i < kParts.size(); i++) {
          LoraPart p;
          p.row0 = f.row0(i), p.rows = kParts[i].rows, p.rank = kParts[i].rank;
          p.B = f.B[i].data(), p.u = u[i].data(), p.scale = Fixture<T>::scale(i);
          parts.push_back(p);
        }
        LoraSiteRows site{kIn, kOut, storage<T>(), nullptr, y.data(), nullptr, nullptr};
        run_on_harness(order, [&](auto launch) { lora_expand_launches(site, parts.data(), static_cast<int>(parts.size()), launch); });
        return widen(y);
      },
      ref, tolerance<T>(2));
}

// Which of the backward's results a check looks at.
enum class Result { kWeights, kInput };

template <typename T>
Outcome backward(Result which) {
  const Fixture<T> f;
  std::vector<double> dx = widen(f.dx0), weights;
  const std::vector<double> x = widen(f.x), dy = widen(f.dy);
  for (size_t i = 0; i < kParts.size(); i++) {
    const int64_t n = kParts[i].rows, r = kParts[i].rank;
    std::vector<double> dA = wide(f.dA0[i]), dB = wide(f.dB0[i]), G(static_cast<size_t>(n * r)), h(static_cast<size_t>(n * kIn)), dh(static_cast<size_t>(n * kIn));
    ops::lora_backward(dx.data() + f.row0(i) * kIn, dA.data(), dB.data(), dy.data() + f.row0(i) * kOut, x.data() + f.row0(i) * kIn, wide(f.u[i]).data(), wide(f.A[i]).data(),
                       wide(f.B[i]).data(), f.keys.data() + f.row0(i), n, f.site(i), G.data(), h.data(), dh.data());
    append(weights, dA);
    append(weights, dB);
  }
  return check(
      [&](ThreadOrder order) {
        std::vector<T> dxk = f.dx0;
        std::vector<std::vector<float>> dA = f.dA0, dB = f.dB0, u = f.u, G;
        std::vector<LoraPart> parts;
        for (size_t i = 0; i < kParts.size(); i++) {
          G.push_back(poisoned<float>(static_cast<size_t>(kParts[i].rows * kParts[i].rank)));
          LoraPart p;
          p.row0 = f.row0(i), p.rows = kParts[i].rows, p.rank = kParts[i].rank;
          p.A = f.A[i].data(), p.B = f.B[i].data(), p.dA = dA[i].data(), p.dB = dB[i].data(), p.u = u[i].data(), p.G = G.back().data();
          p.scale = Fixture<T>::scale(i), p.dropout = kParts[i].dropout, p.module_key = f.module_key, p.row_keys = f.keys.data();
          parts.push_back(p);
        }
        LoraSiteRows site{kIn, kOut, storage<T>(), f.x.data(), nullptr, f.dy.data(), dxk.data()};
        run_on_harness(order, [&](auto launch) {
          lora_backward_first_launches(site, parts.data(), static_cast<int>(parts.size()), launch);
          lora_backward_second_launches(site, parts.data(), static_cast<int>(parts.size()), launch);
        });
        if (which == Result::kInput) return widen(dxk);
        std::vector<double> got;
        for (size_t i = 0; i < kParts.size(); i++) {
          append(got, wide(dA[i]));
          append(got, wide(dB[i]));
        }
        return got;
      },
      which == Result::kInput ? dx : weights, which == Result::kInput ? tolerance<T>(2) : tolerance<float>(1));
}

template <typename T>
void add_typed(std::vector<Case>& cases) {
  const std::string t = type_name<T>();
  cases.push_back({"lora.shrink." + t, [] { return shrink<T>(); }});
  cases.push_back({"lora.expand." + t, [] { return expand<T>(); }});
  cases.push_back({"lora.backward_weights." + t, [] { return backward<T>(Result::kWeights); }});
  cases.push_back({"lora.backward_input." + t, [] { return backward<T>(Result::kInput); }});
}

void add_cases(std::vector<Case>& cases) {
  add_typed<float>(cases);
  add_typed<bf16>(cases);
}

const loraflow::test::Register registered(add_cases);

}  // namespace
