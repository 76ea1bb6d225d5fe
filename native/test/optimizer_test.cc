// optimizer_test.cc: an adapter's optimizer step as the CUDA backend runs it (one launch over all
// its sites, kernels/optimizer.h) on the CPU harness, against train/optimizer.h's
// optimizer_update: AdamW with weight decay, SGD with and without momentum, at the first step and
// a later one, with a clip. Both apply update_parameter with the same scalars, so the harness
// must give the CPU's bits exactly; and the sites' squared gradient norms against a sum in
// double (a tree of 256 partial sums: 1e-12 of the total).
#include <cmath>
#include <cstring>
#include <vector>

#include "cases.h"
#include "cuda/emulate.h"
#include "cuda/kernels/optimizer.h"
#include "kernel_check.h"
#include "train/optimizer.h"

using namespace loraflow;
using namespace loraflow::cuda;
using loraflow::test::Case;
using loraflow::test::Outcome;
using namespace loraflow::test::kernels;

namespace {

const std::vector<int64_t> kSites = {300, 1, 1025};

struct State {
  std::vector<std::vector<float>> p, g, m, v;
};

State random_state(uint64_t seed) {
  Rng rng(seed);
  State s;
  for (int64_t n : kSites) {
    s.p.push_back(random_values<float>(static_cast<size_t>(n), -1, 1, rng));
    s.g.push_back(random_values<float>(static_cast<size_t>(n), -0.1, 0.1, rng));
    s.m.push_back(random_values<float>(static_cast<size_t>(n), -0.01, 0.01, rng));
    s.v.push_back(random_values<float>(static_cast<size_t>(n), 0, 0.001, rng));
  }
  return s;
}

std::vector<float> flat(const State& s) {
  std::vector<float> out;
  for (const auto* part : {&s.p, &s.g, &s.m, &s.v}) for (const auto& x : *part) out.insert(out.end(), x.begin(), x.end());
  return out;
}

Outcome step(const OptimizerConfig& o, int64_t t) {
  const double lr = 3e-3, clip = 0.7;
  const int moments = o.kind == OptimizerConfig::kAdamW ? 2 : o.momentum != 0 ? 1 : 0;
  State want = random_state(static_cast<uint64_t>(t) * 31 + static_cast<uint64_t>(moments));
  const State start = want;
  for (size_t i = 0; i < kSites.size(); i++) {
    optimizer_update(o, want.p[i].data(), want.g[i].data(), moments >= 1 ? want.m[i].data() : nullptr, moments >= 2 ? want.v[i].data() : nullptr, kSites[i], lr, t, clip);
    std::fill(want.g[i].begin(), want.g[i].end(), 0.0f);
  }
  for (ThreadOrder order : kOrders) {
    State got = start;
    std::vector<OptimizerSite> sites;
    int64_t longest = 0;
    for (size_t i = 0; i < kSites.size(); i++) {
      sites.push_back({got.p[i].data(), got.g[i].data(), moments >= 1 ? got.m[i].data() : nullptr, moments >= 2 ? got.v[i].data() : nullptr, kSites[i]});
      longest = std::max(longest, kSites[i]);
    }
    emulate<OptimizerKernel>({sites.data(), static_cast<int>(sites.size()), step_scalars(o, lr, t, clip), longest}, order);
    const std::vector<float> a = flat(got), b = flat(want);
    if (std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) != 0) return {false, "the kernel's update differs from optimizer_update's bits"};
  }
  return {true, "the same bits as optimizer_update, in every thread order"};
}

Outcome squared_norms() {
  State s = random_state(99);
  std::vector<OptimizerSite> sites;
  std::vector<double> want;
  for (size_t i = 0; i < kSites.size(); i++) {
    sites.push_back({s.p[i].data(), s.g[i].data(), nullptr, nullptr, kSites[i]});
    double sq = 0;
    for (float x : s.g[i]) sq += double(x) * x;
    want.push_back(sq);
  }
  return check(
      [&](ThreadOrder order) {
        std::vector<double> out(kSites.size(), std::nan(""));
        emulate<SquaredNormKernel>({sites.data(), static_cast<int>(sites.size()), out.data()}, order);
        return out;
      },
      want, 1e-12);
}

OptimizerConfig adamw() {
  OptimizerConfig o;
  o.kind = OptimizerConfig::kAdamW;
  o.weight_decay = 0.01;
  return o;
}

OptimizerConfig sgd(double momentum) {
  OptimizerConfig o;
  o.kind = OptimizerConfig::kSgd;
  o.momentum = momentum;
  o.weight_decay = 0.001;
  return o;
}

void add_cases(std::vector<Case>& cases) {
  cases.push_back({"optimizer.adamw.first_step", [] { return step(adamw(), 1); }});
  cases.push_back({"optimizer.adamw.step_7", [] { return step(adamw(), 7); }});
  cases.push_back({"optimizer.sgd.first_step", [] { return step(sgd(0.9), 1); }});
  cases.push_back({"optimizer.sgd.momentum_step_4", [] { return step(sgd(0.9), 4); }});
  cases.push_back({"optimizer.sgd.plain", [] { return step(sgd(0), 3); }});
  cases.push_back({"optimizer.squared_norms", squared_norms});
}

const loraflow::test::Register registered(add_cases);

}  // namespace
