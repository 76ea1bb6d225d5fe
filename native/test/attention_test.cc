// attention_test.cc: the attention kernels (kernels/attention.h) on the CPU harness against
// ops::attention_forward and attention_backward in double: packed examples (rows never see
// another example), GQA, a head_dim that is no power of two, and an example longer than one
// 128-key chunk, so the online softmax carries across chunks. Tolerances: fp32 storage 1e-5 of
// the largest magnitude; bf16 storage one rounding of the result and one of fp32 work (2 * 2^-8).
#include <vector>

#include "cases.h"
#include "cuda/kernels/attention.h"
#include "kernel_check.h"
#include "model/ops.h"

using namespace loraflow;
using namespace loraflow::cuda;
using loraflow::test::Case;
using loraflow::test::Outcome;
using namespace loraflow::test::kernels;

namespace {

struct Config {
  int64_t H, KV, hd;
  std::vector<int64_t> examples;  // lengths, packed in order
};

template <typename T>
struct Inputs {
  AttentionShape s;
  std::vector<int32_t> seg_start, seg_end;
  std::vector<T> q, k, v, dout, out, dq0, dk0, dv0;
  std::vector<float> lse;
  std::vector<double> out_ref, lse_ref;

  explicit Inputs(const Config& c) {
    for (int64_t n : c.examples) {
      const int32_t first = static_cast<int32_t>(seg_start.size());
      for (int64_t i = 0; i < n; i++) seg_start.push_back(first), seg_end.push_back(first + static_cast<int32_t>(n));
      s.longest = std::max(s.longest, n);
    }
    s.T = static_cast<int64_t>(seg_start.size()), s.H = c.H, s.KV = c.KV, s.hd = c.hd;
    s.seg_start = seg_start.data(), s.seg_end = seg_end.data();
    Rng rng(static_cast<uint64_t>(s.T * 7 + c.hd));
    const size_t qn = static_cast<size_t>(s.T * c.H * c.hd), kn = static_cast<size_t>(s.T * c.KV * c.hd);
    q = random_values<T>(qn, -1, 1, rng), k = random_values<T>(kn, -1, 1, rng), v = random_values<T>(kn, -1, 1, rng);
    dout = random_values<T>(qn, -1, 1, rng), dq0 = random_values<T>(qn, -1, 1, rng), dk0 = random_values<T>(kn, -1, 1, rng), dv0 = random_values<T>(kn, -1, 1, rng);
    out_ref.resize(qn), lse_ref.resize(static_cast<size_t>(s.T * c.H));
    ops::attention_forward(out_ref.data(), lse_ref.data(), widen(q).data(), widen(k).data(), widen(v).data(), seg_start.data(), s.T, c.H, c.KV, c.hd);
    // The backward's inputs are the forward's results as stored.
    for (double x : out_ref) out.push_back(from_float<T>(static_cast<float>(x)));
    for (double x : lse_ref) lse.push_back(static_cast<float>(x));
  }
};

template <typename T>
Outcome forward(const Config& c, bool look_at_lse) {
  const Inputs<T> in(c);
  return check(
      [&](ThreadOrder order) {
        auto out = poisoned<T>(in.q.size());
        auto lse = poisoned<float>(in.lse.size());
        emulate<AttentionForward<T>>({out.data(), lse.data(), in.q.data(), in.k.data(), in.v.data(), in.s}, order);
        return look_at_lse ? widen(lse) : widen(out);
      },
      look_at_lse ? in.lse_ref : in.out_ref, look_at_lse ? tolerance<float>(1) : tolerance<T>(2));
}

enum class Grad { kQ, kKV };

template <typename T>
Outcome backward(const Config& c, Grad which) {
  const Inputs<T> in(c);
  std::vector<double> dq = widen(in.dq0), dk = widen(in.dk0), dv = widen(in.dv0);
  std::vector<double> lse(in.lse.begin(), in.lse.end());
  ops::attention_backward(dq.data(), dk.data(), dv.data(), widen(in.dout).data(), widen(in.out).data(), lse.data(), widen(in.q).data(), widen(in.k).data(), widen(in.v).data(),
                          in.seg_start.data(), in.s.T, c.H, c.KV, c.hd);
  std::vector<double> want = dq;
  if (which == Grad::kKV) {
    want = dk;
    append(want, dv);
  }
  return check(
      [&](ThreadOrder order) {
        std::vector<T> gq = in.dq0, gk = in.dk0, gv = in.dv0;
        std::vector<float> D = poisoned<float>(in.lse.size());
        emulate<AttentionRowDot<T>>({D.data(), in.dout.data(), in.out.data(), in.s}, order);
        emulate<AttentionBackwardQuery<T>>({gq.data(), in.dout.data(), in.q.data(), in.k.data(), in.v.data(), in.lse.data(), D.data(), in.s}, order);
        emulate<AttentionBackwardKeyValue<T>>({gk.data(), gv.data(), in.dout.data(), in.q.data(), in.k.data(), in.v.data(), in.lse.data(), D.data(), in.s}, order);
        if (which == Grad::kQ) return widen(gq);
        std::vector<double> got = widen(gk);
        append(got, widen(gv));
        return got;
      },
      want, tolerance<T>(2));
}

const Config kSmall{4, 2, 16, {5, 20, 12}};
const Config kLong{2, 1, 72, {3, 140}};

template <typename T>
void add_typed(std::vector<Case>& cases) {
  const std::string t = type_name<T>();
  for (const auto& [name, c] : {std::pair<const char*, Config>{"gqa", kSmall}, {"long", kLong}}) {
    const Config cfg = c;
    cases.push_back({std::string("kernel.attention_forward.") + name + "." + t, [cfg] { return forward<T>(cfg, false); }});
    cases.push_back({std::string("kernel.attention_forward_lse.") + name + "." + t, [cfg] { return forward<T>(cfg, true); }});
    cases.push_back({std::string("kernel.attention_backward_dq.") + name + "." + t, [cfg] { return backward<T>(cfg, Grad::kQ); }});
    cases.push_back({std::string("kernel.attention_backward_dkdv.") + name + "." + t, [cfg] { return backward<T>(cfg, Grad::kKV); }});
  }
}

void add_cases(std::vector<Case>& cases) {
  add_typed<float>(cases);
  add_typed<bf16>(cases);
}

const loraflow::test::Register registered(add_cases);

}  // namespace
