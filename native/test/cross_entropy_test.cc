// cross_entropy_test.cc: the head's loss kernel (kernels/cross_entropy.h) on the CPU harness
// against ops::cross_entropy in double, over rows that are counted and rows that are not (-100),
// with each row's own gradient scale: the loss and the gradient in place in fp32 (1e-5 of the
// largest), and the gradient into a bf16 buffer (one rounding more: 2 * 2^-8).
#include <vector>

#include "cases.h"
#include "cuda/kernels/cross_entropy.h"
#include "kernel_check.h"
#include "model/ops.h"

using namespace loraflow;
using namespace loraflow::cuda;
using loraflow::test::Case;
using loraflow::test::Outcome;
using namespace loraflow::test::kernels;

namespace {

constexpr int64_t kRows = 6, kV = 1000;

struct Rows {
  std::vector<float> logits, scale;
  std::vector<int32_t> targets;
  std::vector<double> loss, grad;  // the reference
};

Rows make_rows() {
  Rng rng(5);
  Rows r;
  r.logits = random_values<float>(static_cast<size_t>(kRows * kV), -6, 6, rng);
  r.targets = {3, -100, 999, 0, -100, 512};
  for (int64_t t = 0; t < kRows; t++) r.scale.push_back(t < 3 ? 0.25f : 0.125f);
  r.grad.assign(r.logits.size(), 0.0);
  for (int64_t t = 0; t < kRows; t++) {
    std::vector<double> l(r.logits.begin() + t * kV, r.logits.begin() + (t + 1) * kV);
    r.loss.push_back(ops::cross_entropy(r.grad.data() + t * kV, l.data(), &r.targets[static_cast<size_t>(t)], 1, kV, double(r.scale[static_cast<size_t>(t)])));
  }
  return r;
}

enum class Look { kLoss, kGradient };

template <typename T>
Outcome cross_entropy(Look look) {
  const Rows r = make_rows();
  return check(
      [&](ThreadOrder order) {
        std::vector<float> logits = r.logits, loss = poisoned<float>(kRows);
        std::vector<T> separate = poisoned<T>(sizeof(T) == 4 ? 0 : r.logits.size());
        T* dl = sizeof(T) == 4 ? reinterpret_cast<T*>(logits.data()) : separate.data();
        emulate<CrossEntropyKernel<T>>({logits.data(), dl, r.targets.data(), r.scale.data(), loss.data(), kRows, kV}, order);
        if (look == Look::kLoss) return widen(loss);
        return sizeof(T) == 4 ? widen(logits) : widen(separate);
      },
      look == Look::kLoss ? r.loss : r.grad, look == Look::kLoss ? tolerance<float>(1) : tolerance<T>(2));
}

void add_cases(std::vector<Case>& cases) {
  cases.push_back({"kernel.cross_entropy.loss", [] { return cross_entropy<float>(Look::kLoss); }});
  cases.push_back({"kernel.cross_entropy.gradient_in_place.f32", [] { return cross_entropy<float>(Look::kGradient); }});
  cases.push_back({"kernel.cross_entropy.gradient.bf16", [] { return cross_entropy<bf16>(Look::kGradient); }});
}

const loraflow::test::Register registered(add_cases);

}  // namespace
