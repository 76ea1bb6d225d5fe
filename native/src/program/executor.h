// executor.h: runs a stage's compiled programs (program/program.h) on a backend. At construction
// it checks every op against the model's shapes and every tensor against its place, so that no
// program, however it was made, reads or writes outside the memory it is given; then forward()
// and backward() resolve each tensor to arena + offset and call the backend's kernel for each op.
// Nothing is allocated per call: the operand tables are sized here.
#pragma once
#include <algorithm>
#include <array>
#include <string>
#include <vector>

#include "core/check.h"
#include "model/llama_config.h"
#include "model/ops.h"
#include "model/rows.h"
#include "program/backend.h"
#include "program/program.h"

namespace loraflow {

// One adapter's LoRA state on a stage. A null A means the module is not a target.
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
  std::vector<std::array<Site, kModules>> layers;  // by layer, counted from the stage's first
};

// The memory a micro-batch's program runs in: its stash slot and message buffers in the
// activation arena, and the workspace (offsets in units of S; -1: none).
template <typename S>
struct ProgramMemory {
  S* arena = nullptr;
  RoundBuffers at;
  S* work = nullptr;
};

template <typename S>
class ProgramExecutor {
 public:
  // weights[i]: where weight slot i is (on the backend's device).
  ProgramExecutor(const LlamaConfig& config, int64_t first_block, int64_t last_block, std::vector<ShapeClassSpec> classes,
                  std::vector<ProgramSpec> programs, std::vector<WeightSlotSpec> slots, std::vector<const S*> weights, Backend<S>& backend)
      : c_(config), b0_(first_block), b1_(last_block), classes_(std::move(classes)), programs_(std::move(programs)), slots_(std::move(slots)),
        weights_(std::move(weights)), backend_(backend), inv_freq_(ops::rope_inv_freq(config)) {
    LF_CHECK(b0_ >= 0 && b1_ <= 2 * c_.layers && b0_ < b1_, "stage blocks [" << b0_ << ", " << b1_ << ") are outside the model");
    LF_CHECK(weights_.size() == slots_.size(), "weights table of " << slots_.size() << " slots, " << weights_.size() << " placed");
    LF_CHECK(programs_.size() == classes_.size(), programs_.size() << " programs for " << classes_.size() << " shape classes");
    size_t widest = 1, parts = 1;
    for (size_t k = 0; k < programs_.size(); k++) {
      LF_CHECK(programs_[k].cls == static_cast<int>(k), "program " << k << " is for class " << programs_[k].cls);
      check_program(programs_[k], classes_[k], "program " + std::to_string(k));
      backend_.check(programs_[k], "program " + std::to_string(k));
      for (const auto* list : {&programs_[k].forward, &programs_[k].backward}) {
        for (const OpSpec& op : *list) widest = std::max({widest, op.in.size(), op.out.size(), op.scratch.size()}), parts = std::max(parts, op.parts.size());
      }
      max_work_ = std::max(max_work_, programs_[k].work);
    }
    in_.resize(widest);
    out_.resize(widest);
    scratch_.resize(widest);
    numel_in_.resize(widest);
    numel_out_.resize(widest);
    lora_.resize(parts);
  }

  int64_t first_layer() const { return b0_ / 2; }
  int64_t layer_count() const { return (b1_ + 1) / 2 - b0_ / 2; }
  const ProgramSpec& program(int cls) const { return programs_.at(static_cast<size_t>(cls)); }
  size_t classes() const { return programs_.size(); }
  int64_t max_work() const { return max_work_; }

  void set_adapter(int id, AdapterOnStage<S>* adapter) {
    if (static_cast<int>(adapters_.size()) <= id) adapters_.resize(static_cast<size_t>(id) + 1, nullptr);
    adapters_[static_cast<size_t>(id)] = adapter;
  }

  // Returns, after a program with the head, the sum over parts of each part's grad_scale * (sum
  // of its counted losses); part_losses() has them one by one.
  double forward(int cls, const ProgramMemory<S>& m, const MicroBatchRows& rows) {
    run(program(cls).forward, cls, m, rows);
    double loss = 0;
    for (size_t p = 0; p < rows.parts.size(); p++) loss += part_losses_[p];
    return loss;
  }

  void backward(int cls, const ProgramMemory<S>& m, const MicroBatchRows& rows) { run(program(cls).backward, cls, m, rows); }

  // Each part's loss share after a forward with the head (zero otherwise).
  const std::vector<double>& part_losses() const { return part_losses_; }

  // A micro-batch of class `cls` may run in these buffers of a round region of `round_elems`:
  // each inside the region, a stash slot, and message buffers that hold its [T, C] rows.
  void check_buffers(int cls, const RoundBuffers& b, int64_t round_elems, const std::string& where) const {
    const ProgramSpec& p = program(cls);
    for (auto [at, n] : {std::pair<int64_t, int64_t>{b.stash, p.stash}, {b.act_in, p.message}, {b.act_out, p.message}, {b.grad_in, p.message}, {b.grad_out, p.message}}) {
      LF_CHECK(at == -1 || (at >= 0 && at <= round_elems && n <= round_elems - at), where << " puts a buffer outside the round region");
    }
    LF_CHECK(b.stash >= 0, where << " has no stash slot");
    const bool messages = b.act_in >= 0 || b.act_out >= 0 || b.grad_in >= 0 || b.grad_out >= 0;
    LF_CHECK(!messages || p.message >= p.activation_units(classes_[static_cast<size_t>(cls)].rows * c_.hidden), where << " has message buffers smaller than its rows");
  }

  // Sizes the per-micro-batch tables for up to `parts` parts (before the loop: no allocation in it).
  void reserve_parts(size_t parts) { part_losses_.reserve(parts); }

 private:
  void run(const std::vector<OpSpec>& ops, int cls, const ProgramMemory<S>& m, const MicroBatchRows& rows) {
    const ProgramSpec& p = program(cls);
    const ShapeClassSpec& shape = classes_[static_cast<size_t>(cls)];
    // The rows must be the class's: its row count and its parts' rows, one for one.
    LF_CHECK(rows.T == shape.rows && rows.parts.size() == shape.parts.size(), "a micro-batch of " << rows.T << " rows in " << rows.parts.size() << " parts runs class " << cls << " (" << shape.rows << " rows, " << shape.parts.size() << " parts)");
    for (size_t i = 0; i < rows.parts.size(); i++) {
      LF_CHECK(rows.parts[i].rows == shape.parts[i].rows && rows.parts[i].row0 == (i == 0 ? 0 : rows.parts[i - 1].row0 + rows.parts[i - 1].rows), "part " << i << " of a micro-batch does not match class " << cls);
    }
    part_losses_.assign(rows.parts.size(), 0.0);
    KernelContext<S> ctx;
    ctx.config = &c_;
    ctx.T = rows.T;
    ctx.tokens = rows.tokens.data();
    ctx.targets = rows.targets.data();
    ctx.seg_start = rows.seg_start.data();
    ctx.pos = rows.pos.data();
    ctx.row_keys = rows.row_keys.data();
    ctx.parts = rows.parts.data();
    ctx.part_count = rows.parts.size();
    ctx.inv_freq = inv_freq_.data();
    ctx.part_losses = part_losses_.data();
    const KernelContext<S>& bound = backend_.bind_rows(ctx);
    const auto& table = backend_.kernels();
    for (const OpSpec& op : ops) {
      for (size_t i = 0; i < op.in.size(); i++) in_[i] = resolve(p, op.in[i], m), numel_in_[i] = p.tensors[static_cast<size_t>(op.in[i])].numel;
      for (size_t i = 0; i < op.out.size(); i++) out_[i] = resolve(p, op.out[i], m), numel_out_[i] = p.tensors[static_cast<size_t>(op.out[i])].numel;
      for (size_t i = 0; i < op.scratch.size(); i++) scratch_[i] = resolve(p, op.scratch[i], m);
      KernelCall<S> call;
      call.op = &op;
      call.ctx = &bound;
      call.in = in_.data();
      call.out = out_.data();
      call.scratch = scratch_.data();
      call.numel_in = numel_in_.data();
      call.numel_out = numel_out_.data();
      if (op.weight >= 0) {
        const WeightSlotSpec& w = slots_[static_cast<size_t>(op.weight)];
        call.weight = weights_[static_cast<size_t>(op.weight)];
        call.weight_rows = w.rows;
        call.weight_cols = w.cols;
      }
      if (!op.parts.empty()) {
        bind_lora(op, rows);
        call.lora = lora_.data();
      }
      if (op.code == OpCode::kAttention || op.code == OpCode::kAttentionBwd) {
        // The scores scratch holds the largest packed block of these rows: data decides it.
        const int64_t n = ops::largest_attention_block(rows.seg_start.data(), rows.T, op.chunk);
        LF_CHECK(n * n <= p.tensors[static_cast<size_t>(op.scratch[0])].numel, "attention over a block of " << n << " rows needs more scratch than the program gives");
        if (op.code == OpCode::kAttentionBwd) LF_CHECK(n * n <= p.tensors[static_cast<size_t>(op.scratch[1])].numel, "attention backward's scratch is too small");
      }
      table[static_cast<size_t>(op.code)](call, backend_.stream());
    }
    backend_.finish(bound, ctx);
  }

  void bind_lora(const OpSpec& op, const MicroBatchRows& rows) {
    for (size_t i = 0; i < op.parts.size(); i++) {
      const AdapterRows& part = rows.parts[static_cast<size_t>(op.parts[i])];
      LF_CHECK(part.adapter >= 0 && static_cast<size_t>(part.adapter) < adapters_.size() && adapters_[static_cast<size_t>(part.adapter)], "adapter " << part.adapter << " has no weights on this stage");
      const AdapterOnStage<S>& a = *adapters_[static_cast<size_t>(part.adapter)];
      const auto& site = a.layers.at(static_cast<size_t>(op.layer))[static_cast<size_t>(op.module)];
      LF_CHECK(site.A != nullptr, "adapter " << part.adapter << " does not target module " << kModuleNames[op.module] << " of layer " << first_layer() + op.layer);
      const int64_t layer = first_layer() + op.layer;
      lora_[i] = LoraBinding<S>{site.A, site.B, site.dA, site.dB,
                                ops::LoraSite{module_in(c_, op.module), module_out(c_, op.module), a.rank, a.scale, a.dropout, dropout_module_key(layer, op.module)}};
    }
  }

  S* resolve(const ProgramSpec& p, int t, const ProgramMemory<S>& m) const {
    const TensorSpec& x = p.tensors[static_cast<size_t>(t)];
    int64_t base = -1;
    switch (x.place) {
      case Place::kWork: return m.work + x.offset;
      case Place::kStash: base = m.at.stash; break;
      case Place::kActIn: base = m.at.act_in; break;
      case Place::kActOut: base = m.at.act_out; break;
      case Place::kGradIn: base = m.at.grad_in; break;
      case Place::kGradOut: base = m.at.grad_out; break;
      case Place::kCount: break;
    }
    LF_CHECK(base >= 0, "tensor " << x.name << " is in " << kPlaceNames[static_cast<int>(x.place)] << ", which this micro-batch has no buffer for");
    return m.arena + base + x.offset;
  }

  // Every op against the shapes its kernel assumes, every tensor inside its place.
  void check_program(const ProgramSpec& p, const ShapeClassSpec& shape, const std::string& where) const;

  LlamaConfig c_;
  int64_t b0_, b1_;
  std::vector<ShapeClassSpec> classes_;
  std::vector<ProgramSpec> programs_;
  std::vector<WeightSlotSpec> slots_;
  std::vector<const S*> weights_;
  Backend<S>& backend_;
  std::vector<float> inv_freq_;
  std::vector<AdapterOnStage<S>*> adapters_;
  std::vector<double> part_losses_;
  std::vector<S*> in_, out_, scratch_;
  std::vector<int64_t> numel_in_, numel_out_;
  std::vector<LoraBinding<S>> lora_;
  int64_t max_work_ = 0;
};

}  // namespace loraflow

#include "program/check_program.h"
