// blas_test.cc: the engine's cuBLASLt calls (cuda/libs/blas.h) through the project's fake
// libcublasLt on the emulated device, against gemm<double>: every transpose, bf16 and fp32
// storage, leading dimensions wider than rows, batches; and what the fake refuses.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "cases.h"
#include "core/check.h"
#include "cpu/gemm.h"
#include "cuda/bf16.h"
#include "cuda/emu_device.h"
#include "cuda/libs/blas.h"
#include "env.h"

using namespace loraflow::cuda;
using loraflow::test::Case;
using loraflow::test::Outcome;
using loraflow::test::refused;
using loraflow::test::ScopedEnv;

namespace {

ScopedEnv use_fake() { return ScopedEnv({{"LORAFLOW_CUBLASLT", std::string(LORAFLOW_FAKE_CUBLASLT)}}); }

size_t size_of(GemmType t) { return t == GemmType::kBF16 ? 2 : 4; }

// Host values stored as `t`, as bytes, and the values they hold.
struct HostMatrix {
  std::vector<unsigned char> bytes;
  std::vector<double> values;
};

HostMatrix random_matrix(int64_t n, GemmType t, std::mt19937_64& rng, bool nan = false) {
  HostMatrix m;
  m.bytes.resize(static_cast<size_t>(n) * size_of(t));
  m.values.resize(static_cast<size_t>(n));
  std::uniform_real_distribution<float> u(-1, 1);
  for (int64_t i = 0; i < n; i++) {
    const float v = nan ? std::numeric_limits<float>::quiet_NaN() : u(rng);
    if (t == GemmType::kBF16) {
      const bf16 b = from_float<bf16>(v);
      std::memcpy(&m.bytes[static_cast<size_t>(i) * 2], &b, 2);
      m.values[static_cast<size_t>(i)] = to_float(b);
    } else {
      std::memcpy(&m.bytes[static_cast<size_t>(i) * 4], &v, 4);
      m.values[static_cast<size_t>(i)] = v;
    }
  }
  return m;
}

double value_at(const std::vector<unsigned char>& bytes, GemmType t, int64_t i) {
  if (t == GemmType::kBF16) {
    bf16 b;
    std::memcpy(&b, &bytes[static_cast<size_t>(i) * 2], 2);
    return to_float(b);
  }
  float f;
  std::memcpy(&f, &bytes[static_cast<size_t>(i) * 4], 4);
  return f;
}

struct GemmCase {
  GemmShape shape;
  float alpha, beta;
};

Outcome run_gemm(const GemmCase& c) {
  const ScopedEnv env = use_fake();
  const GemmShape& g = c.shape;
  EmuDevice device({});
  auto stream = device.create_stream();
  Blas blas(device);
  std::mt19937_64 rng(static_cast<uint64_t>(g.M * 131 + g.N * 7 + g.K + g.ta * 2 + g.tb));
  const int64_t a_rows = g.ta ? g.K : g.M, b_rows = g.tb ? g.N : g.K;
  const int64_t a_n = g.stride_a * (g.batch - 1) + a_rows * g.lda, b_n = g.stride_b * (g.batch - 1) + b_rows * g.ldb, c_n = g.stride_c * (g.batch - 1) + g.M * g.ldc;
  HostMatrix A = random_matrix(a_n, g.ab, rng), B = random_matrix(b_n, g.ab, rng);
  // With beta 0, C is NaN: cuBLASLt must not read it.
  HostMatrix C = random_matrix(c_n, g.c, rng, c.beta == 0.0f);
  std::vector<double> ref = C.values;
  for (int32_t b = 0; b < g.batch; b++) {
    if (c.beta == 0.0f) {
      for (int64_t i = 0; i < g.M; i++) for (int64_t j = 0; j < g.N; j++) ref[static_cast<size_t>(b * g.stride_c + i * g.ldc + j)] = 0;
    }
    loraflow::gemm<double>(g.ta, g.tb, g.M, g.N, g.K, c.alpha, A.values.data() + b * g.stride_a, g.lda, B.values.data() + b * g.stride_b, g.ldb, c.beta == 0.0f ? 0.0 : c.beta,
                           ref.data() + b * g.stride_c, g.ldc);
  }
  void* dA = device.allocate(A.bytes.size());
  void* dB = device.allocate(B.bytes.size());
  void* dC = device.allocate(C.bytes.size());
  device.copy(dA, A.bytes.data(), A.bytes.size(), *stream);
  device.copy(dB, B.bytes.data(), B.bytes.size(), *stream);
  device.copy(dC, C.bytes.data(), C.bytes.size(), *stream);
  blas.gemm(*stream, g, c.alpha, dA, dB, c.beta, dC);
  std::vector<unsigned char> out(C.bytes.size());
  device.copy(out.data(), dC, out.size(), *stream);
  device.synchronize(*stream);
  double scale = 0, err = 0;
  for (int32_t b = 0; b < g.batch; b++) {
    for (int64_t i = 0; i < g.M; i++) {
      for (int64_t j = 0; j < g.N; j++) {
        const int64_t at = b * g.stride_c + i * g.ldc + j;
        const double got = value_at(out, g.c, at), want = ref[static_cast<size_t>(at)];
        if (std::isnan(got)) return {false, "NaN in C (was C read with beta 0?)"};
        scale = std::max(scale, std::fabs(want));
        err = std::max(err, std::fabs(got - want));
      }
    }
  }
  // fp32 sums of K products; a bf16 C rounds once more (2^-8 of each value: 8 significant bits).
  const double tol = g.c == GemmType::kBF16 ? std::ldexp(1.0, -7) : 1e-5;
  char buf[160];
  std::snprintf(buf, sizeof buf, "error %.3g of max |C| %.3g (tolerance %.3g), through %s", err / scale, scale, tol, blas.library_path().c_str());
  return {err <= tol * scale, buf};
}


Outcome refuses_short_leading_dimension() {
  return refused(
      [] {
        const ScopedEnv env = use_fake();
        EmuDevice device({});
        auto s = device.create_stream();
        Blas blas(device);
        void* p = device.allocate(4096);
        GemmShape g;
        g.M = 4, g.N = 4, g.K = 8, g.lda = 4, g.ldb = 8, g.ldc = 4;  // A is [4, 8]: lda 4 is short
        blas.gemm(*s, g, 1, p, p, 0, p);
      },
      "a leading dimension shorter than its rows");
}

Outcome refuses_host_memory() {
  return refused(
      [] {
        const ScopedEnv env = use_fake();
        EmuDevice device({});
        auto s = device.create_stream();
        Blas blas(device);
        void* p = device.allocate(4096);
        std::vector<float> host(64);
        GemmShape g;
        g.M = 4, g.N = 4, g.K = 4, g.lda = 4, g.ldb = 4, g.ldc = 4, g.ab = GemmType::kF32, g.c = GemmType::kF32;
        blas.gemm(*s, g, 1, host.data(), p, 0, p);
      },
      "is not inside one allocation of the device");
}




GemmCase gemm_case(bool ta, bool tb, GemmType ab, GemmType c, float beta) {
  GemmCase x;
  GemmShape& g = x.shape;
  g.ta = ta, g.tb = tb, g.M = 5, g.N = 7, g.K = 33, g.ab = ab, g.c = c;
  g.lda = (ta ? g.M : g.K) + 3;
  g.ldb = (tb ? g.K : g.N) + 2;
  g.ldc = g.N + 1;
  x.alpha = 1.5f;
  x.beta = beta;
  return x;
}

void add_cases(std::vector<Case>& cases) {
  for (GemmType ab : {GemmType::kF32, GemmType::kBF16}) {
    for (GemmType c : {GemmType::kF32, GemmType::kBF16}) {
      if (ab == GemmType::kF32 && c == GemmType::kBF16) continue;  // C is A's type or fp32
      for (int t = 0; t < 4; t++) {
        for (float beta : {0.0f, 0.5f}) {
          const GemmCase g = gemm_case(t & 1, t & 2, ab, c, beta);
          const std::string name = std::string("blas.gemm.") + (ab == GemmType::kBF16 ? "bf16" : "f32") + "_to_" + (c == GemmType::kBF16 ? "bf16" : "f32") + (g.shape.ta ? ".At" : ".A") +
                                   (g.shape.tb ? "Bt" : "B") + (beta == 0 ? ".beta0" : ".beta");
          cases.push_back({name, [g] { return run_gemm(g); }});
        }
      }
    }
  }
  GemmCase batched = gemm_case(false, true, GemmType::kBF16, GemmType::kF32, 0.0f);
  batched.shape.batch = 3;
  batched.shape.stride_a = batched.shape.M * batched.shape.lda + 11;
  batched.shape.stride_b = batched.shape.N * batched.shape.ldb + 5;
  batched.shape.stride_c = batched.shape.M * batched.shape.ldc + 2;
  cases.push_back({"blas.gemm.batched", [batched] { return run_gemm(batched); }});
  cases.push_back({"blas.refuses_a_short_leading_dimension", refuses_short_leading_dimension});
  cases.push_back({"blas.refuses_host_memory", refuses_host_memory});
}

const loraflow::test::Register registered(add_cases);

}  // namespace
