// ops_binding.cc: `op(name, params, inputs, dout)`, each operator of model/ops.h and model/lora.h
// run once in double precision on arrays from JavaScript: the forward output, and with `dout`
// the gradients backward gives for L = sum(out * dout). The tests difference L numerically
// against these, op by op.
#include <napi.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "binding/napi_value.h"
#include "core/check.h"
#include "model/lora.h"
#include "model/ops.h"
#include "spec/read.h"

namespace loraflow {
namespace {

using Vec = std::vector<double>;

struct OpCall {
  spec::Value params;
  spec::Value inputs;
  bool backward;
  Vec dout;

  // Parameters and inputs are read with spec/read.h's checked readers.
  int64_t integer(const char* key) const { return spec::integer(params, key, "op parameters"); }
  double number(const char* key) const { return spec::number(params, key, "op parameters"); }
  // An input may be read more than once: each read takes a copy.
  template <typename T>
  std::vector<T> input(const char* key, int64_t expected) const {
    spec::Value copy = spec::field(inputs, key, "op inputs");
    return spec::typed<T>(copy, expected, std::string("op input `") + key + "`");
  }
  Vec doubles(const char* key, int64_t expected) const { return input<double>(key, expected); }
  std::vector<int32_t> ints(const char* key, int64_t expected) const { return input<int32_t>(key, expected); }
  std::vector<uint64_t> keys(const char* key, int64_t expected) const { return input<uint64_t>(key, expected); }
  const double* dy(size_t expected) const {
    LF_CHECK(dout.size() == expected, "dout has " << dout.size() << " elements, expected " << expected);
    return dout.data();
  }
};

struct OpResult {
  Vec out;
  std::map<std::string, Vec> grads;
};

using OpFn = std::function<OpResult(const OpCall&)>;

OpResult run_rmsnorm(const OpCall& c) {
  const int64_t T = c.integer("T"), C = c.integer("C");
  Vec x = c.doubles("x", T * C), w = c.doubles("weight", C), rstd(T);
  OpResult r{Vec(T * C), {}};
  ops::rmsnorm_forward(r.out.data(), rstd.data(), x.data(), w.data(), T, C, c.number("eps"));
  if (c.backward) {
    Vec dx(T * C, 0.0);
    ops::rmsnorm_backward(dx.data(), c.dy(T * C), x.data(), w.data(), rstd.data(), T, C);
    r.grads["x"] = dx;
  }
  return r;
}

OpResult run_rope(const OpCall& c) {
  const int64_t T = c.integer("T"), H = c.integer("heads"), hd = c.integer("headDim");
  Vec x = c.doubles("x", T * H * hd);
  auto pos = c.ints("pos", T);
  auto inv = ops::rope_inv_freq(hd, c.number("theta"));
  OpResult r{x, {}};
  ops::rope_apply(r.out.data(), pos.data(), inv.data(), T, H, hd, false);
  if (c.backward) {
    const double* dy = c.dy(T * H * hd);
    Vec dx(dy, dy + T * H * hd);
    ops::rope_apply(dx.data(), pos.data(), inv.data(), T, H, hd, true);
    r.grads["x"] = dx;
  }
  return r;
}

OpResult run_attention(const OpCall& c) {
  const int64_t T = c.integer("T"), H = c.integer("heads"), KV = c.integer("kvHeads"), hd = c.integer("headDim");
  LF_CHECK(KV > 0 && H % KV == 0, "heads must be a multiple of kvHeads");
  Vec q = c.doubles("q", T * H * hd), k = c.doubles("k", T * KV * hd), v = c.doubles("v", T * KV * hd), lse(T * H);
  auto seg = c.ints("segStart", T);
  for (int64_t t = 0; t < T; t++) LF_CHECK(seg[t] >= 0 && seg[t] <= t, "segStart[" << t << "] must be in [0, " << t << "]");
  OpResult r{Vec(T * H * hd), {}};
  ops::attention_forward(r.out.data(), lse.data(), q.data(), k.data(), v.data(), seg.data(), T, H, KV, hd);
  if (c.backward) {
    Vec dq(T * H * hd, 0.0), dk(T * KV * hd, 0.0), dv(T * KV * hd, 0.0);
    ops::attention_backward(dq.data(), dk.data(), dv.data(), c.dy(T * H * hd), r.out.data(), lse.data(), q.data(), k.data(), v.data(),
                            seg.data(), T, H, KV, hd);
    r.grads["q"] = dq;
    r.grads["k"] = dk;
    r.grads["v"] = dv;
  }
  return r;
}

OpResult run_swiglu(const OpCall& c) {
  const int64_t n = c.integer("n");
  Vec g = c.doubles("gate", n), u = c.doubles("up", n);
  OpResult r{Vec(n), {}};
  ops::swiglu_forward(r.out.data(), g.data(), u.data(), n);
  if (c.backward) {
    Vec dg(n, 0.0), du(n, 0.0);
    ops::swiglu_backward(dg.data(), du.data(), c.dy(n), g.data(), u.data(), n);
    r.grads["gate"] = dg;
    r.grads["up"] = du;
  }
  return r;
}

OpResult run_cross_entropy(const OpCall& c) {
  const int64_t T = c.integer("T"), V = c.integer("V");
  Vec logits = c.doubles("logits", T * V);
  auto targets = c.ints("targets", T);
  for (int64_t t = 0; t < T; t++) LF_CHECK(targets[t] == -100 || (targets[t] >= 0 && targets[t] < V), "target " << targets[t] << " out of range");
  const double scale = c.number("gradScale");
  OpResult r{Vec(1), {}};
  Vec dl(T * V);
  // out = scale * (sum of counted losses): this micro-batch's share of the step's mean loss,
  // the quantity whose gradient the op writes.
  r.out[0] = scale * ops::cross_entropy(c.backward ? dl.data() : static_cast<double*>(nullptr), logits.data(), targets.data(), T, V, scale);
  if (c.backward) {
    const double d = c.dy(1)[0];
    for (auto& g : dl) g *= d;
    r.grads["logits"] = dl;
  }
  return r;
}

OpResult run_linear(const OpCall& c) {
  const int64_t T = c.integer("T"), C = c.integer("C"), OC = c.integer("OC");
  Vec x = c.doubles("x", T * C), W = c.doubles("W", OC * C);
  OpResult r{Vec(T * OC), {}};
  ops::linear_forward(r.out.data(), x.data(), W.data(), T, C, OC, false);
  if (c.backward) {
    Vec dx(T * C, 0.0);
    ops::linear_backward_input(dx.data(), c.dy(T * OC), W.data(), T, C, OC);
    r.grads["x"] = dx;
  }
  return r;
}

OpResult run_lora(const OpCall& c) {
  ops::LoraSite site;
  const int64_t n = c.integer("n");
  site.in = c.integer("in");
  site.out = c.integer("out");
  site.rank = c.integer("rank");
  site.scale = c.number("scale");
  site.dropout = c.number("dropout");
  site.module_key = static_cast<uint64_t>(c.integer("moduleKey"));
  LF_CHECK(site.dropout >= 0 && site.dropout < 1, "dropout must be in [0, 1)");
  Vec x = c.doubles("x", n * site.in), A = c.doubles("A", site.rank * site.in), B = c.doubles("B", site.out * site.rank);
  auto keys = c.keys("rowKeys", n);
  Vec u(n * site.rank);
  OpResult r{Vec(n * site.out, 0.0), {}};
  ops::lora_forward(r.out.data(), u.data(), x.data(), A.data(), B.data(), keys.data(), n, site);
  if (c.backward) {
    Vec dx(n * site.in, 0.0), dA(site.rank * site.in, 0.0), dB(site.out * site.rank, 0.0);
    ops::lora_backward(dx.data(), dA.data(), dB.data(), c.dy(n * site.out), x.data(), u.data(), A.data(), B.data(), keys.data(), n, site);
    r.grads["x"] = dx;
    r.grads["A"] = dA;
    r.grads["B"] = dB;
  }
  return r;
}

const std::map<std::string, OpFn>& op_table() {
  static const std::map<std::string, OpFn> table = {
      {"rmsnorm", run_rmsnorm}, {"rope", run_rope},     {"attention", run_attention}, {"swiglu", run_swiglu},
      {"cross_entropy", run_cross_entropy}, {"linear", run_linear}, {"lora", run_lora},
  };
  return table;
}

Napi::Float64Array to_js(Napi::Env env, const Vec& v) {
  auto arr = Napi::Float64Array::New(env, v.size());
  std::copy(v.begin(), v.end(), arr.Data());
  return arr;
}

}  // namespace

Napi::Value RunOp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsString() || !info[1].IsObject() || !info[2].IsObject()) {
    throw Napi::TypeError::New(env, "op(name, params, inputs, dout?)");
  }
  const std::string name = info[0].As<Napi::String>();
  auto it = op_table().find(name);
  if (it == op_table().end()) throw Napi::Error::New(env, "unknown op `" + name + "`");
  try {
    OpCall call{js::to_spec(info[1], "op parameters"), js::to_spec(info[2], "op inputs"), false, {}};
    if (info.Length() > 3 && info[3].IsTypedArray()) {
      spec::Value d = js::to_spec(info[3], "dout");
      call.backward = true;
      call.dout = spec::typed<double>(d, -1, "dout");
    }
    OpResult result = it->second(call);
    Napi::Object out = Napi::Object::New(env);
    out.Set("out", to_js(env, result.out));
    Napi::Object grads = Napi::Object::New(env);
    for (const auto& [key, value] : result.grads) grads.Set(key, to_js(env, value));
    out.Set("grads", grads);
    return out;
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, std::string("op ") + name + ": " + e.what());
  }
}

}  // namespace loraflow
