// check_program.h: ProgramExecutor::check_program, the engine's own check of a program before it
// runs a single op: readPlan validated the plan, but the engine trusts nothing it is handed.
// Every operand count and size is the one its kernel touches, computed from the model's shapes.
#pragma once
#include <sstream>

#include "program/executor.h"

namespace loraflow {

template <typename S>
void ProgramExecutor<S>::check_program(const ProgramSpec& p, const ShapeClassSpec& shape, const std::string& where) const {
  const int64_t T = shape.rows, C = c_.hidden;
  for (size_t i = 0; i < p.tensors.size(); i++) {
    const TensorSpec& t = p.tensors[i];
    int64_t n = 1;
    for (int64_t d : t.shape) {
      LF_CHECK(d > 0 && d <= (int64_t(1) << 40) / n, where << ": tensor " << t.name << " has a bad shape");
      n *= d;
    }
    LF_CHECK(n == t.numel, where << ": tensor " << t.name << " holds " << t.numel << " elements, its shape " << n);
    const int64_t room = t.place == Place::kStash ? p.stash : t.place == Place::kWork ? p.work : p.message;
    LF_CHECK(t.extent == n * dtype_bytes(t.dtype) / p.unit_bytes && t.extent * p.unit_bytes == n * dtype_bytes(t.dtype), where << ": tensor " << t.name << " spans " << t.extent << " units for " << n << " " << dtype_name(t.dtype) << " elements");
    LF_CHECK(t.offset >= 0 && t.offset <= room && t.extent <= room - t.offset, where << ": tensor " << t.name << " lies outside its " << kPlaceNames[static_cast<int>(t.place)]);
  }
  bool messages = false;
  for (const TensorSpec& t : p.tensors) messages = messages || (t.place != Place::kStash && t.place != Place::kWork);
  LF_CHECK(!messages || p.message >= p.activation_units(T * C), where << ": message buffers of " << p.message << " units, the stage sends " << p.activation_units(T * C));
  auto numel = [&](int id) { return p.tensors[static_cast<size_t>(id)].numel; };
  for (const auto* list : {&p.forward, &p.backward}) {
    for (size_t k = 0; k < list->size(); k++) {
      const OpSpec& op = (*list)[k];
      std::ostringstream at;
      at << where << (list == &p.forward ? " forward" : " backward") << " op " << k << " (" << kOpNames[static_cast<int>(op.code)] << ")";
      const std::string w = at.str();
      for (const auto* ids : {&op.in, &op.out, &op.scratch}) for (int id : *ids) LF_CHECK(id >= 0 && static_cast<size_t>(id) < p.tensors.size(), w << ": tensor %" << id << " does not exist");
      for (int id : op.scratch) LF_CHECK(p.tensors[static_cast<size_t>(id)].place == Place::kWork, w << ": scratch outside the workspace");
      const WeightSlotSpec* weight = nullptr;
      if (op.weight >= 0) {
        LF_CHECK(static_cast<size_t>(op.weight) < slots_.size(), w << ": weight " << op.weight << " is not in the stage's table");
        weight = &slots_[static_cast<size_t>(op.weight)];
      }
      auto arity = [&](size_t in, size_t out, size_t scratch_min, size_t scratch_max, bool weighted) {
        LF_CHECK(op.in.size() == in && op.out.size() == out && op.scratch.size() >= scratch_min && op.scratch.size() <= scratch_max && (weight != nullptr) == weighted,
                 w << ": " << op.in.size() << " operands, " << op.out.size() << " results, " << op.scratch.size() << " scratch" << (weight ? ", a weight" : ""));
      };
      auto size = [&](int id, int64_t want, const char* what) { LF_CHECK(numel(id) == want, w << ": " << what << " holds " << numel(id) << " elements, needs " << want); };
      auto at_least = [&](int id, int64_t want, const char* what) { LF_CHECK(numel(id) >= want, w << ": " << what << " holds " << numel(id) << " elements, needs " << want); };
      auto same = [&](int a, int b) { LF_CHECK(a == b, w << ": must accumulate into the tensor it reads"); };
      auto vector_weight = [&](int64_t n) { LF_CHECK(weight->numel() == n, w << ": weight " << weight->name << " has " << weight->numel() << " elements, needs " << n); };
      auto lora = [&](int64_t& in, int64_t& out) {
        LF_CHECK(op.module >= 0 && op.module < kModules && op.layer >= 0 && op.layer < layer_count() && !op.parts.empty(), w << ": no LoRA site");
        const int64_t block = module_block(first_layer() + op.layer, op.module);
        LF_CHECK(block >= b0_ && block < b1_, w << ": module " << kModuleNames[op.module] << " of layer " << first_layer() + op.layer << " is not on this stage");
        for (size_t i = 0; i < op.parts.size(); i++) {
          const int k = op.parts[i];
          LF_CHECK(k >= 0 && static_cast<size_t>(k) < shape.parts.size() && (shape.parts[static_cast<size_t>(k)].modules >> op.module & 1u), w << ": part " << k << " does not target the module");
          for (size_t j = 0; j < i; j++) LF_CHECK(op.parts[j] != k, w << ": part " << k << " twice");
        }
        in = module_in(c_, op.module);
        out = module_out(c_, op.module);
      };
      auto part = [&](size_t i) -> const ShapeClassSpec::Part& { return shape.parts[static_cast<size_t>(op.parts[i])]; };
      auto sums = [&](int64_t in, int64_t& g, int64_t& dropped) {
        g = 0;
        dropped = 0;
        for (size_t i = 0; i < op.parts.size(); i++) {
          g += part(i).rows * part(i).rank;
          if (part(i).dropout) dropped += part(i).rows * in;
        }
      };
      switch (op.code) {
        case OpCode::kEmbed:
          arity(0, 1, 0, 0, true);
          vector_weight(c_.vocab * C);
          size(op.out[0], T * C, "the output");
          break;
        case OpCode::kCopy:
          arity(1, 1, 0, 0, false);
          size(op.out[0], numel(op.in[0]), "the copy");
          break;
        case OpCode::kAccumulate:
          arity(2, 1, 0, 0, false);
          same(op.in[1], op.out[0]);
          size(op.out[0], numel(op.in[0]), "the sum");
          break;
        case OpCode::kZero:
          arity(0, 1, 0, 0, false);
          break;
        case OpCode::kRmsnorm:
          arity(1, 2, 0, 0, true);
          vector_weight(C);
          size(op.in[0], T * C, "x");
          size(op.out[0], T * C, "the norm");
          size(op.out[1], T, "rstd");
          break;
        case OpCode::kRmsnormBwd:
          arity(4, 1, 0, 0, true);
          vector_weight(C);
          same(op.in[3], op.out[0]);
          size(op.in[0], T * C, "dn");
          size(op.in[1], T * C, "x");
          size(op.in[2], T, "rstd");
          size(op.out[0], T * C, "dx");
          break;
        case OpCode::kLinear:
        case OpCode::kLinearDx: {
          const bool dx = op.code == OpCode::kLinearDx;
          arity(dx ? 2 : 1, 1, 0, 0, true);
          LF_CHECK(weight->cols > 1, w << ": " << weight->name << " is not a matrix");
          if (dx) same(op.in[1], op.out[0]);
          size(op.in[0], T * (dx ? weight->rows : weight->cols), dx ? "dy" : "x");
          size(op.out[0], T * (dx ? weight->cols : weight->rows), dx ? "dx" : "y");
          break;
        }
        case OpCode::kLoraShrink: {
          int64_t in, out, g, dropped;
          lora(in, out);
          sums(in, g, dropped);
          arity(1, op.parts.size(), dropped > 0 ? 1 : 0, 1, false);
          size(op.in[0], T * in, "x");
          for (size_t i = 0; i < op.parts.size(); i++) size(op.out[i], part(i).rows * part(i).rank, "u");
          if (dropped > 0) at_least(op.scratch[0], dropped, "the masked input");
          break;
        }
        case OpCode::kLoraExpand: {
          int64_t in, out;
          lora(in, out);
          arity(1 + op.parts.size(), 1, 0, 0, false);
          same(op.in[0], op.out[0]);
          size(op.out[0], T * out, "y");
          for (size_t i = 0; i < op.parts.size(); i++) size(op.in[1 + i], part(i).rows * part(i).rank, "u");
          break;
        }
        case OpCode::kLoraBwd: {
          int64_t in, out, g, dropped;
          lora(in, out);
          sums(in, g, dropped);
          const bool dx = !op.out.empty();
          arity(2 + op.parts.size() + (dx ? 1 : 0), dx ? 1 : 0, dropped > 0 ? (dx ? 3 : 2) : 1, 3, false);
          size(op.in[0], T * out, "dy");
          size(op.in[1], T * in, "x");
          for (size_t i = 0; i < op.parts.size(); i++) size(op.in[2 + i], part(i).rows * part(i).rank, "u");
          if (dx) {
            same(op.in.back(), op.out[0]);
            size(op.out[0], T * in, "dx");
          }
          at_least(op.scratch[0], g, "G");
          if (dropped > 0) {
            at_least(op.scratch[1], dropped, "the masked input");
            if (dx) at_least(op.scratch[2], dropped, "dh");
          }
          break;
        }
        case OpCode::kRope:
        case OpCode::kRopeInv:
          arity(1, 1, 0, 0, false);
          same(op.in[0], op.out[0]);
          LF_CHECK(numel(op.in[0]) == T * c_.q_dim() || numel(op.in[0]) == T * c_.kv_dim(), w << ": rotates neither queries nor keys");
          break;
        case OpCode::kAttention:
          arity(3, 2, 1, 1, false);
          LF_CHECK(op.chunk >= 1, w << ": no block size");
          size(op.in[0], T * c_.q_dim(), "q");
          size(op.in[1], T * c_.kv_dim(), "k");
          size(op.in[2], T * c_.kv_dim(), "v");
          size(op.out[0], T * c_.q_dim(), "the output");
          size(op.out[1], T * c_.heads, "lse");
          break;
        case OpCode::kAttentionBwd:
          arity(9, 3, 3, 3, false);
          LF_CHECK(op.chunk >= 1, w << ": no block size");
          for (int i : {0, 1, 3, 6}) size(op.in[static_cast<size_t>(i)], T * c_.q_dim(), "a query-shaped operand");
          for (int i : {4, 5, 7, 8}) size(op.in[static_cast<size_t>(i)], T * c_.kv_dim(), "a key-shaped operand");
          size(op.in[2], T * c_.heads, "lse");
          for (int i = 0; i < 3; i++) same(op.in[static_cast<size_t>(6 + i)], op.out[static_cast<size_t>(i)]);
          at_least(op.scratch[2], T * c_.heads, "the row terms");
          break;
        case OpCode::kSwiglu:
          arity(2, 1, 0, 0, false);
          size(op.in[0], T * c_.ffn, "gate");
          size(op.in[1], T * c_.ffn, "up");
          size(op.out[0], T * c_.ffn, "the output");
          break;
        case OpCode::kSwigluBwd:
          arity(5, 2, 0, 0, false);
          for (int id : op.in) size(id, T * c_.ffn, "an operand");
          same(op.in[3], op.out[0]);
          same(op.in[4], op.out[1]);
          break;
        case OpCode::kAdd:
          arity(2, 1, 0, 0, false);
          size(op.in[1], numel(op.in[0]), "b");
          size(op.out[0], numel(op.in[0]), "the sum");
          break;
        case OpCode::kHeadLoss:
          arity(1, 1, 1, 2, true);
          vector_weight(c_.vocab * C);
          LF_CHECK(op.chunk >= 1 && op.chunk <= T, w << ": chunk of " << op.chunk << " rows");
          size(op.in[0], T * C, "the norm");
          size(op.out[0], T * C, "dn");
          at_least(op.scratch[0], op.chunk * c_.vocab, "the logits");
          // Below fp32, the logits' gradient in the model's dtype.
          if (op.scratch.size() == 2) at_least(op.scratch[1], op.chunk * c_.vocab, "the logits' gradient");
          break;
        case OpCode::kCount:
          LF_CHECK(false, w << ": unknown op");
      }
    }
  }
}

}  // namespace loraflow
