// kernel_check.h: what the kernel tests share: random inputs exact in the storage type, poisoned
// outputs, and check(), which runs a kernel in every thread order against a reference (see the
// tolerances at the top of kernels_test.cc).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "cases.h"
#include "cuda/bf16.h"
#include "cuda/emulate.h"

namespace loraflow::test::kernels {

using cuda::bf16;
using cuda::from_float;
using cuda::to_float;
using cuda::ThreadOrder;

constexpr ThreadOrder kOrders[] = {ThreadOrder::kForward, ThreadOrder::kReverse, ThreadOrder::kShuffled};

struct Rng {
  std::mt19937_64 gen;
  explicit Rng(uint64_t seed) : gen(seed) {}
  double uniform(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(gen); }
};

template <typename T>
std::vector<T> random_values(size_t n, double lo, double hi, Rng& rng) {
  std::vector<T> v(n);
  for (auto& x : v) x = from_float<T>(static_cast<float>(rng.uniform(lo, hi)));
  return v;
}

template <typename T>
std::vector<T> poisoned(size_t n) {
  return std::vector<T>(n, from_float<T>(std::numeric_limits<float>::quiet_NaN()));
}

template <typename T>
std::vector<double> widen(const std::vector<T>& v) {
  std::vector<double> d(v.size());
  for (size_t i = 0; i < v.size(); i++) d[i] = to_float(v[i]);
  return d;
}

template <typename T>
const char* type_name() {
  return sizeof(T) == 2 ? "bf16" : "f32";
}

// The tolerance of an output that is rounded `roundings` times when stored in T (see the top).
template <typename T>
double tolerance(int roundings) {
  return sizeof(T) == 2 ? roundings * std::ldexp(1.0, -8) : 1e-5;
}

inline void append(std::vector<double>& to, const std::vector<double>& from) { to.insert(to.end(), from.begin(), from.end()); }

// Runs `kernel` (fresh inputs and outputs each time, returning its outputs) in every thread
// order and checks them against `reference`.
inline Outcome check(const std::function<std::vector<double>(ThreadOrder)>& kernel, const std::vector<double>& reference, double tol) {
  std::vector<double> first;
  for (ThreadOrder order : kOrders) {
    const std::vector<double> out = kernel(order);
    if (out.size() != reference.size()) return {false, "output size differs from the reference"};
    for (size_t i = 0; i < out.size(); i++) {
      if (std::isnan(out[i])) return {false, "NaN at output " + std::to_string(i) + " (read before written?)"};
    }
    if (first.empty()) {
      first = out;
    } else if (std::memcmp(first.data(), out.data(), out.size() * sizeof(double)) != 0) {
      return {false, "thread order changes the result (a race between threads of a phase)"};
    }
  }
  double scale = 0, err = 0;
  for (size_t i = 0; i < reference.size(); i++) scale = std::max(scale, std::fabs(reference[i]));
  for (size_t i = 0; i < reference.size(); i++) err = std::max(err, std::fabs(first[i] - reference[i]));
  const double rel = scale == 0 ? err : err / scale;
  char buf[160];
  std::snprintf(buf, sizeof buf, "error %.3g of max |ref| %.3g (tolerance %.3g)", rel, scale, tol);
  return {rel <= tol, buf};
}


}  // namespace loraflow::test::kernels
