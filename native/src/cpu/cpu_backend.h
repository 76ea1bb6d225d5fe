// cpu_backend.h: the CPU backend: host memory, one in-order stream per stage (kernels run on the
// calling thread as they are issued), and kernels that are the loops of model/ops.h and
// model/lora.h, which stay the numerical oracle. Templated on the scalar: float trains, double
// is the gradient checks' precision.
#pragma once
#include <algorithm>
#include <cstring>
#include <memory>

#include "core/check.h"
#include "model/lora.h"
#include "model/ops.h"
#include "program/backend.h"

namespace loraflow {

namespace cpu_kernels {

template <typename S>
using Call = KernelCall<S>;

inline int64_t width(int64_t numel, int64_t T) { return T == 0 ? 0 : numel / T; }

template <typename S>
void embed(const Call<S>& c, Stream*) {
  ops::embedding_forward(c.out[0], c.ctx->tokens, c.weight, c.ctx->T, c.ctx->config->hidden);
}

template <typename S>
void copy(const Call<S>& c, Stream*) {
  std::copy(c.in[0], c.in[0] + c.numel_in[0], c.out[0]);
}

template <typename S>
void accumulate(const Call<S>& c, Stream*) {
  for (int64_t i = 0; i < c.numel_in[0]; i++) c.out[0][i] += c.in[0][i];
}

template <typename S>
void zero(const Call<S>& c, Stream*) {
  std::fill(c.out[0], c.out[0] + c.numel_out[0], S(0));
}

template <typename S>
void rmsnorm(const Call<S>& c, Stream*) {
  ops::rmsnorm_forward(c.out[0], c.out[1], c.in[0], c.weight, c.ctx->T, c.ctx->config->hidden, c.ctx->config->norm_eps);
}

template <typename S>
void rmsnorm_bwd(const Call<S>& c, Stream*) {
  ops::rmsnorm_backward(c.out[0], c.in[0], c.in[1], c.weight, c.in[2], c.ctx->T, c.ctx->config->hidden);
}

template <typename S>
void linear(const Call<S>& c, Stream*) {
  ops::linear_forward(c.out[0], c.in[0], c.weight, c.ctx->T, c.weight_cols, c.weight_rows, false);
}

template <typename S>
void linear_dx(const Call<S>& c, Stream*) {
  ops::linear_backward_input(c.out[0], c.in[0], c.weight, c.ctx->T, c.weight_cols, c.weight_rows);
}

// Each part's rows, and where its share of a scratch buffer of `per_row` elements a row starts.
template <typename S, typename Fn>
void for_parts(const Call<S>& c, int64_t per_row, bool dropout_only, Fn&& fn) {
  int64_t at = 0;
  for (size_t i = 0; i < c.op->parts.size(); i++) {
    const AdapterRows& part = c.ctx->parts[c.op->parts[i]];
    const LoraBinding<S>& b = c.lora[i];
    const bool uses = !dropout_only || b.site.dropout != 0;
    fn(i, part, b, uses ? at : -1);
    if (uses) at += part.rows * per_row;
  }
}

template <typename S>
void lora_shrink(const Call<S>& c, Stream*) {
  const int64_t in = c.lora[0].site.in;
  for_parts(c, in, true, [&](size_t i, const AdapterRows& part, const LoraBinding<S>& b, int64_t h) {
    ops::lora_shrink(c.out[i], c.in[0] + part.row0 * in, b.A, c.ctx->row_keys + part.row0, part.rows, b.site, h < 0 ? nullptr : c.scratch[0] + h);
  });
}

template <typename S>
void lora_expand(const Call<S>& c, Stream*) {
  const int64_t out = c.lora[0].site.out;
  for_parts(c, 0, false, [&](size_t i, const AdapterRows& part, const LoraBinding<S>& b, int64_t) {
    ops::lora_expand(c.out[0] + part.row0 * out, c.in[1 + i], b.B, part.rows, b.site);
  });
}

template <typename S>
void lora_bwd(const Call<S>& c, Stream*) {
  const int64_t in = c.lora[0].site.in, out = c.lora[0].site.out;
  S* dx = c.op->out.empty() ? nullptr : c.out[0];
  int64_t g = 0;
  for_parts(c, in, true, [&](size_t i, const AdapterRows& part, const LoraBinding<S>& b, int64_t h) {
    S* hp = h < 0 ? nullptr : c.scratch[1] + h;
    S* dhp = h < 0 || !dx ? nullptr : c.scratch[2] + h;
    ops::lora_backward(dx ? dx + part.row0 * in : nullptr, b.dA, b.dB, c.in[0] + part.row0 * out, c.in[1] + part.row0 * in, c.in[2 + i], b.A, b.B,
                       c.ctx->row_keys + part.row0, part.rows, b.site, c.scratch[0] + g, hp, dhp);
    g += part.rows * b.site.rank;
  });
}

template <typename S>
void rope(const Call<S>& c, Stream*) {
  const LlamaConfig& k = *c.ctx->config;
  ops::rope_apply(c.out[0], c.ctx->pos, c.ctx->inv_freq, c.ctx->T, width(c.numel_in[0], c.ctx->T) / k.head_dim, k.head_dim, false);
}

template <typename S>
void rope_inv(const Call<S>& c, Stream*) {
  const LlamaConfig& k = *c.ctx->config;
  ops::rope_apply(c.out[0], c.ctx->pos, c.ctx->inv_freq, c.ctx->T, width(c.numel_in[0], c.ctx->T) / k.head_dim, k.head_dim, true);
}

template <typename S>
void attention(const Call<S>& c, Stream*) {
  const LlamaConfig& k = *c.ctx->config;
  ops::attention_forward(c.out[0], c.out[1], c.in[0], c.in[1], c.in[2], c.ctx->seg_start, c.ctx->T, k.heads, k.kv_heads, k.head_dim, c.scratch[0], c.op->chunk);
}

template <typename S>
void attention_bwd(const Call<S>& c, Stream*) {
  const LlamaConfig& k = *c.ctx->config;
  ops::attention_backward(c.out[0], c.out[1], c.out[2], c.in[0], c.in[1], c.in[2], c.in[3], c.in[4], c.in[5], c.ctx->seg_start, c.ctx->T, k.heads,
                          k.kv_heads, k.head_dim, c.scratch[0], c.scratch[1], c.scratch[2], c.op->chunk);
}

template <typename S>
void swiglu(const Call<S>& c, Stream*) {
  ops::swiglu_forward(c.out[0], c.in[0], c.in[1], c.numel_in[0]);
}

template <typename S>
void swiglu_bwd(const Call<S>& c, Stream*) {
  ops::swiglu_backward(c.out[0], c.out[1], c.in[0], c.in[1], c.in[2], c.numel_in[0]);
}

template <typename S>
void add(const Call<S>& c, Stream*) {
  for (int64_t i = 0; i < c.numel_in[0]; i++) c.out[0][i] = c.in[0][i] + c.in[1][i];
}

// Logits, loss and the loss's gradient w.r.t. the head's input, `chunk` rows at a time: the
// [chunk, V] logits become their own gradient in place, then add into dn[chunk, C].
template <typename S>
void head_loss(const Call<S>& c, Stream*) {
  const int64_t T = c.ctx->T, C = c.ctx->config->hidden, V = c.ctx->config->vocab, chunk = c.op->chunk;
  S* logits = c.scratch[0];
  S* dn = c.out[0];
  std::fill(dn, dn + T * C, S(0));
  for (size_t p = 0; p < c.ctx->part_count; p++) c.ctx->part_losses[p] = 0;
  // Each part's loss is summed in row order across chunks, in double, as one pass would.
  for (int64_t r0 = 0; r0 < T; r0 += chunk) {
    const int64_t r1 = std::min(T, r0 + chunk);
    ops::linear_forward(logits, c.in[0] + r0 * C, c.weight, r1 - r0, C, V, false);
    for (size_t p = 0; p < c.ctx->part_count; p++) {
      const AdapterRows& part = c.ctx->parts[p];
      const int64_t a = std::max(r0, part.row0), b = std::min(r1, part.row0 + part.rows);
      if (a >= b) continue;
      // Row by row into the part's running sum: the same additions, in the same order, as one call.
      for (int64_t t = a; t < b; t++) {
        S* l = logits + (t - r0) * V;
        c.ctx->part_losses[p] += ops::cross_entropy(l, l, c.ctx->targets + t, 1, V, S(part.grad_scale));
      }
    }
    ops::linear_backward_input(dn + r0 * C, logits, c.weight, r1 - r0, C, V);
  }
  for (size_t p = 0; p < c.ctx->part_count; p++) c.ctx->part_losses[p] *= c.ctx->parts[p].grad_scale;
}

}  // namespace cpu_kernels

template <typename S>
class CpuBackend final : public Backend<S> {
 public:
  CpuBackend() {
    using namespace cpu_kernels;
    auto set = [&](OpCode op, Kernel<S> k) { table_[static_cast<size_t>(op)] = k; };
    set(OpCode::kEmbed, embed<S>);
    set(OpCode::kCopy, copy<S>);
    set(OpCode::kAccumulate, accumulate<S>);
    set(OpCode::kZero, zero<S>);
    set(OpCode::kRmsnorm, rmsnorm<S>);
    set(OpCode::kRmsnormBwd, rmsnorm_bwd<S>);
    set(OpCode::kLinear, linear<S>);
    set(OpCode::kLinearDx, linear_dx<S>);
    set(OpCode::kLoraShrink, lora_shrink<S>);
    set(OpCode::kLoraExpand, lora_expand<S>);
    set(OpCode::kLoraBwd, lora_bwd<S>);
    set(OpCode::kRope, rope<S>);
    set(OpCode::kRopeInv, rope_inv<S>);
    set(OpCode::kAttention, attention<S>);
    set(OpCode::kAttentionBwd, attention_bwd<S>);
    set(OpCode::kSwiglu, swiglu<S>);
    set(OpCode::kSwigluBwd, swiglu_bwd<S>);
    set(OpCode::kAdd, add<S>);
    set(OpCode::kHeadLoss, head_loss<S>);
    for (auto k : table_) LF_CHECK(k != nullptr, "the CPU backend lacks a kernel");
  }

  const char* name() const override { return "cpu"; }
  S* allocate(int64_t n) override { return new S[static_cast<size_t>(std::max<int64_t>(n, 1))](); }
  void release(S* p) override { delete[] p; }
  void upload(S* dst, const S* src, int64_t n, Stream*) override { std::copy(src, src + n, dst); }
  void download(S* dst, const S* src, int64_t n, Stream*) override { std::copy(src, src + n, dst); }
  // One in-order stream: a kernel has run when its call returns, so events are complete at once.
  Stream* stream() override { return nullptr; }
  Event* record(Stream*) override { return nullptr; }
  void wait(Stream*, Event*) override {}
  void synchronize(Stream*) override {}
  const KernelTable<S>& kernels() const override { return table_; }

 private:
  KernelTable<S> table_{};
};

}  // namespace loraflow
