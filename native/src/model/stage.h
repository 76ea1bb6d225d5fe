// stage.h: one pipeline stage of a Llama model with LoRA adapters: a contiguous run of layer
// blocks (2i: layer i's attention half, 2i + 1: its MLP half), plus the embedding on the first
// stage and the final norm, head and loss on the last. forward() stashes what backward() needs
// per micro-batch; backward() accumulates LoRA gradients and returns the input gradient.
// One base GEMM runs over all rows of a fused micro-batch; each adapter's LoRA branch runs on its
// own row segment (model/lora.h).
#pragma once
#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "core/check.h"
#include "model/llama_config.h"
#include "model/lora.h"
#include "model/ops.h"

namespace loraflow {

// Frozen base weights of one layer, Hugging Face layout ([out, in]).
template <typename S>
struct LayerWeights {
  const S* input_norm = nullptr;  // [C]
  const S* q = nullptr;           // [H*hd, C]
  const S* k = nullptr;           // [KV*hd, C]
  const S* v = nullptr;           // [KV*hd, C]
  const S* o = nullptr;           // [C, H*hd]
  const S* post_norm = nullptr;   // [C]
  const S* gate = nullptr;        // [F, C]
  const S* up = nullptr;          // [F, C]
  const S* down = nullptr;        // [C, F]
  const S* module(int m) const {
    const S* all[kModules] = {q, k, v, o, gate, up, down};
    return all[m];
  }
};

template <typename S>
struct StageWeights {
  const S* embed = nullptr;       // [V, C], first stage (and last when tied)
  std::vector<LayerWeights<S>> layers;  // indexed by layer - first layer of the stage
  const S* final_norm = nullptr;  // [C], last stage
  const S* lm_head = nullptr;     // [V, C], last stage (the embedding when tied)
};

// One adapter's LoRA weights and gradients on one stage. A null A means the module is not a target.
template <typename S>
struct AdapterOnStage {
  int64_t rank = 0;
  double scale = 1, dropout = 0;
  struct Site {
    S* A = nullptr;   // [r, in]
    S* B = nullptr;   // [out, r]
    S* dA = nullptr;  // [r, in]
    S* dB = nullptr;  // [out, r]
  };
  std::vector<std::array<Site, kModules>> layers;  // indexed like StageWeights::layers
};

// The rows of a micro-batch that belong to one adapter.
struct AdapterRows {
  int adapter = 0;
  int64_t row0 = 0, rows = 0;
  double grad_scale = 0;  // 1 / counted tokens of the adapter's optimizer step
};

struct MicroBatchRows {
  int64_t T = 0;
  std::vector<int32_t> tokens;     // [T] input ids (first stage)
  std::vector<int32_t> targets;    // [T] next-token labels, -100 not counted (last stage)
  std::vector<int32_t> seg_start;  // [T] first row of each row's packed example
  std::vector<int32_t> pos;        // [T] RoPE position (restarts per packed example)
  std::vector<uint64_t> row_keys;  // [T] dropout row keys
  std::vector<AdapterRows> parts;  // contiguous, in row order
};

template <typename S>
class Stage {
 public:
  Stage(const LlamaConfig& config, int64_t first_block, int64_t last_block, bool embedding, bool head, StageWeights<S> weights)
      : c_(config), b0_(first_block), b1_(last_block), embedding_(embedding), head_(head), w_(std::move(weights)),
        inv_freq_(ops::rope_inv_freq(config)) {
    LF_CHECK(b0_ >= 0 && b1_ <= 2 * c_.layers && b0_ <= b1_, "stage blocks [" << b0_ << ", " << b1_ << ") are outside the model");
    LF_CHECK(static_cast<int64_t>(w_.layers.size()) == layer_count(), "stage has " << w_.layers.size() << " layers of weights, needs " << layer_count());
  }

  int64_t first_layer() const { return b0_ / 2; }
  int64_t layer_count() const { return b1_ == b0_ ? 0 : (b1_ + 1) / 2 - b0_ / 2; }

  void set_adapter(int id, AdapterOnStage<S>* adapter) {
    if (static_cast<int>(adapters_.size()) <= id) adapters_.resize(id + 1, nullptr);
    adapters_[id] = adapter;
  }

  // x_in: [T, C] from the previous stage (ignored on the first stage). x_out: [T, C] to the next
  // stage (ignored on the last). Returns, on the last stage, the sum over adapters of
  // grad_scale * (sum of counted losses): the micro-batch's share of each step's mean loss.
  double forward(int64_t mb, const MicroBatchRows& rows, const S* x_in, S* x_out) {
    const int64_t T = rows.T, C = c_.hidden;
    auto& st = stash_[mb];
    st = Stash{};
    std::vector<S> x(static_cast<size_t>(T * C));
    if (embedding_) ops::embedding_forward(x.data(), rows.tokens.data(), w_.embed, T, C);
    else std::copy(x_in, x_in + T * C, x.begin());
    for (int64_t b = b0_; b < b1_; b++) {
      st.blocks.emplace_back();
      if (b % 2 == 0) attention_forward(b / 2, rows, x, st.blocks.back());
      else mlp_forward(b / 2, rows, x, st.blocks.back());
    }
    if (!head_) {
      std::copy(x.begin(), x.end(), x_out);
      return 0;
    }
    return head_forward(rows, x, st);
  }

  // dx_out: [T, C] from the next stage (ignored on the last). dx_in: [T, C] for the previous
  // stage (may be null on the first). LoRA gradients accumulate into the adapters' dA, dB.
  void backward(int64_t mb, const MicroBatchRows& rows, const S* dx_out, S* dx_in) {
    auto it = stash_.find(mb);
    LF_CHECK(it != stash_.end(), "backward of micro-batch " << mb << " before its forward");
    Stash& st = it->second;
    const int64_t T = rows.T, C = c_.hidden;
    std::vector<S> dx(static_cast<size_t>(T * C), S(0));
    if (head_) head_backward(rows, st, dx);
    else std::copy(dx_out, dx_out + T * C, dx.begin());
    for (int64_t b = b1_ - 1; b >= b0_; b--) {
      BlockStash& bs = st.blocks[static_cast<size_t>(b - b0_)];
      if (b % 2 == 0) attention_backward(b / 2, rows, bs, dx);
      else mlp_backward(b / 2, rows, bs, dx);
    }
    if (dx_in) std::copy(dx.begin(), dx.end(), dx_in);
    stash_.erase(it);
  }

  size_t stashed() const { return stash_.size(); }

  // Drops what forward() kept for a micro-batch that will have no backward (evaluation).
  void discard(int64_t mb) { stash_.erase(mb); }

  // On the last stage, after forward(): each part's grad_scale * (sum of its counted losses).
  const std::vector<double>& part_losses() const { return part_losses_; }

 private:
  // What backward needs of one block, per micro-batch. Shapes in rows of T.
  struct BlockStash {
    std::vector<S> x;      // [T, C] block input (the residual stream)
    std::vector<S> rstd;   // [T]
    std::vector<S> n;      // [T, C] normalised input of the projections
    std::vector<S> q, k, v;  // attention: [T, H*hd], [T, KV*hd] x2 after RoPE
    std::vector<S> att;    // attention: [T, H*hd] input of o_proj
    std::vector<S> lse;    // attention: [T, H]
    std::vector<S> gate, up, act;  // MLP: [T, F] each
    // LoRA intermediates u = dropout(x) A^T, [rows of the adapter, r], by (module, part index).
    std::map<std::pair<int, size_t>, std::vector<S>> u;
  };
  struct Stash {
    std::vector<BlockStash> blocks;
    std::vector<S> head_x, head_rstd, head_n;  // [T, C], [T], [T, C]
    std::vector<S> dlogits;                    // [T, V]
  };

  const AdapterOnStage<S>* adapter(int id) const {
    LF_CHECK(id >= 0 && id < static_cast<int>(adapters_.size()) && adapters_[id], "adapter " << id << " has no weights on this stage");
    return adapters_[id];
  }

  // Calls fn(part index, part, site, LoraSite) for every part whose adapter targets module m.
  template <typename Fn>
  void for_each_lora(int64_t layer, int m, const MicroBatchRows& rows, Fn&& fn) const {
    for (size_t p = 0; p < rows.parts.size(); p++) {
      const AdapterRows& part = rows.parts[p];
      const auto* a = adapter(part.adapter);
      const auto& site = a->layers[layer - first_layer()][m];
      if (!site.A) continue;
      fn(p, part, site, ops::LoraSite{module_in(c_, m), module_out(c_, m), a->rank, a->scale, a->dropout, dropout_module_key(layer, m)});
    }
  }

  // y[T, out] = x W^T, then every adapter targeting the module adds its branch on its rows.
  void project(int64_t layer, int m, const MicroBatchRows& rows, const std::vector<S>& x, std::vector<S>& y, BlockStash& bs) {
    const int64_t T = rows.T, in = module_in(c_, m), out = module_out(c_, m);
    y.assign(static_cast<size_t>(T * out), S(0));
    ops::linear_forward(y.data(), x.data(), w_.layers[layer - first_layer()].module(m), T, in, out, false);
    for_each_lora(layer, m, rows, [&](size_t p, const AdapterRows& part, const auto& site, const ops::LoraSite& ls) {
      auto& u = bs.u[{m, p}];
      u.resize(static_cast<size_t>(part.rows * ls.rank));
      ops::lora_forward(y.data() + part.row0 * out, u.data(), x.data() + part.row0 * in, site.A, site.B, rows.row_keys.data() + part.row0,
                        part.rows, ls);
    });
  }

  // dx[T, in] += dy W, plus the LoRA branches' input gradients; LoRA weight gradients accumulate.
  void project_backward(int64_t layer, int m, const MicroBatchRows& rows, const std::vector<S>& x, const std::vector<S>& dy, std::vector<S>& dx,
                        BlockStash& bs) {
    const int64_t T = rows.T, in = module_in(c_, m), out = module_out(c_, m);
    ops::linear_backward_input(dx.data(), dy.data(), w_.layers[layer - first_layer()].module(m), T, in, out);
    for_each_lora(layer, m, rows, [&](size_t p, const AdapterRows& part, const auto& site, const ops::LoraSite& ls) {
      ops::lora_backward(dx.data() + part.row0 * in, site.dA, site.dB, dy.data() + part.row0 * out, x.data() + part.row0 * in,
                         bs.u.at({m, p}).data(), site.A, site.B, rows.row_keys.data() + part.row0, part.rows, ls);
    });
  }

  // Stashes the block input and its RMSNorm (the projections' input, and what backward needs).
  void normalize(BlockStash& bs, const std::vector<S>& x, const S* weight, int64_t T) {
    const int64_t C = c_.hidden;
    bs.x = x;
    bs.rstd.resize(T);
    bs.n.resize(T * C);
    ops::rmsnorm_forward(bs.n.data(), bs.rstd.data(), x.data(), weight, T, C, c_.norm_eps);
  }

  void attention_forward(int64_t layer, const MicroBatchRows& rows, std::vector<S>& x, BlockStash& bs) {
    const int64_t T = rows.T, C = c_.hidden;
    normalize(bs, x, w_.layers[layer - first_layer()].input_norm, T);
    project(layer, kQ, rows, bs.n, bs.q, bs);
    project(layer, kK, rows, bs.n, bs.k, bs);
    project(layer, kV, rows, bs.n, bs.v, bs);
    ops::rope_apply(bs.q.data(), rows.pos.data(), inv_freq_.data(), T, c_.heads, c_.head_dim, false);
    ops::rope_apply(bs.k.data(), rows.pos.data(), inv_freq_.data(), T, c_.kv_heads, c_.head_dim, false);
    bs.att.resize(T * c_.q_dim());
    bs.lse.resize(T * c_.heads);
    ops::attention_forward(bs.att.data(), bs.lse.data(), bs.q.data(), bs.k.data(), bs.v.data(), rows.seg_start.data(), T, c_.heads,
                           c_.kv_heads, c_.head_dim);
    std::vector<S> o;
    project(layer, kO, rows, bs.att, o, bs);
    for (int64_t i = 0; i < T * C; i++) x[i] += o[i];
  }

  void attention_backward(int64_t layer, const MicroBatchRows& rows, BlockStash& bs, std::vector<S>& dx) {
    const int64_t T = rows.T, C = c_.hidden;
    const auto& lw = w_.layers[layer - first_layer()];
    // dx is the gradient of the block output; the residual passes it through unchanged.
    std::vector<S> datt(static_cast<size_t>(T * c_.q_dim()), S(0));
    project_backward(layer, kO, rows, bs.att, dx, datt, bs);
    std::vector<S> dq(static_cast<size_t>(T * c_.q_dim()), S(0)), dk(static_cast<size_t>(T * c_.kv_dim()), S(0)),
        dv(static_cast<size_t>(T * c_.kv_dim()), S(0));
    ops::attention_backward(dq.data(), dk.data(), dv.data(), datt.data(), bs.att.data(), bs.lse.data(), bs.q.data(), bs.k.data(), bs.v.data(),
                            rows.seg_start.data(), T, c_.heads, c_.kv_heads, c_.head_dim);
    ops::rope_apply(dq.data(), rows.pos.data(), inv_freq_.data(), T, c_.heads, c_.head_dim, true);
    ops::rope_apply(dk.data(), rows.pos.data(), inv_freq_.data(), T, c_.kv_heads, c_.head_dim, true);
    std::vector<S> dn(static_cast<size_t>(T * C), S(0));
    project_backward(layer, kQ, rows, bs.n, dq, dn, bs);
    project_backward(layer, kK, rows, bs.n, dk, dn, bs);
    project_backward(layer, kV, rows, bs.n, dv, dn, bs);
    ops::rmsnorm_backward(dx.data(), dn.data(), bs.x.data(), lw.input_norm, bs.rstd.data(), T, C);
  }

  void mlp_forward(int64_t layer, const MicroBatchRows& rows, std::vector<S>& x, BlockStash& bs) {
    const int64_t T = rows.T, C = c_.hidden, F = c_.ffn;
    normalize(bs, x, w_.layers[layer - first_layer()].post_norm, T);
    project(layer, kGate, rows, bs.n, bs.gate, bs);
    project(layer, kUp, rows, bs.n, bs.up, bs);
    bs.act.resize(T * F);
    ops::swiglu_forward(bs.act.data(), bs.gate.data(), bs.up.data(), T * F);
    std::vector<S> d;
    project(layer, kDown, rows, bs.act, d, bs);
    for (int64_t i = 0; i < T * C; i++) x[i] += d[i];
  }

  void mlp_backward(int64_t layer, const MicroBatchRows& rows, BlockStash& bs, std::vector<S>& dx) {
    const int64_t T = rows.T, C = c_.hidden, F = c_.ffn;
    const auto& lw = w_.layers[layer - first_layer()];
    std::vector<S> dact(static_cast<size_t>(T * F), S(0));
    project_backward(layer, kDown, rows, bs.act, dx, dact, bs);
    std::vector<S> dgate(static_cast<size_t>(T * F), S(0)), dup(static_cast<size_t>(T * F), S(0));
    ops::swiglu_backward(dgate.data(), dup.data(), dact.data(), bs.gate.data(), bs.up.data(), T * F);
    std::vector<S> dn(static_cast<size_t>(T * C), S(0));
    project_backward(layer, kGate, rows, bs.n, dgate, dn, bs);
    project_backward(layer, kUp, rows, bs.n, dup, dn, bs);
    ops::rmsnorm_backward(dx.data(), dn.data(), bs.x.data(), lw.post_norm, bs.rstd.data(), T, C);
  }

  // Final norm, head and loss. The loss gradient is computed here, at forward time, and stashed
  // in place of the logits: the same memory, and backward needs nothing else of them.
  double head_forward(const MicroBatchRows& rows, const std::vector<S>& x, Stash& st) {
    const int64_t T = rows.T, C = c_.hidden, V = c_.vocab;
    st.head_x = x;
    st.head_rstd.resize(T);
    st.head_n.resize(T * C);
    ops::rmsnorm_forward(st.head_n.data(), st.head_rstd.data(), x.data(), w_.final_norm, T, C, c_.norm_eps);
    st.dlogits.resize(static_cast<size_t>(T * V));
    ops::linear_forward(st.dlogits.data(), st.head_n.data(), w_.lm_head, T, C, V, false);
    double loss = 0;
    part_losses_.clear();
    for (const AdapterRows& part : rows.parts) {
      S* logits = st.dlogits.data() + part.row0 * V;
      part_losses_.push_back(part.grad_scale * ops::cross_entropy(logits, logits, rows.targets.data() + part.row0, part.rows, V, S(part.grad_scale)));
      loss += part_losses_.back();
    }
    return loss;
  }

  void head_backward(const MicroBatchRows& rows, Stash& st, std::vector<S>& dx) {
    const int64_t T = rows.T, C = c_.hidden, V = c_.vocab;
    std::vector<S> dn(static_cast<size_t>(T * C), S(0));
    ops::linear_backward_input(dn.data(), st.dlogits.data(), w_.lm_head, T, C, V);
    ops::rmsnorm_backward(dx.data(), dn.data(), st.head_x.data(), w_.final_norm, st.head_rstd.data(), T, C);
  }

  LlamaConfig c_;
  int64_t b0_, b1_;
  bool embedding_, head_;
  StageWeights<S> w_;
  std::vector<float> inv_freq_;
  std::vector<AdapterOnStage<S>*> adapters_;
  std::map<int64_t, Stash> stash_;
  std::vector<double> part_losses_;
};

}  // namespace loraflow
