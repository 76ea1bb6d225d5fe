// program_read.h: compiled programs (plan.json's `programs`) read from a spec (spec/value.h)
// into the engine's form, with every field checked for type and range. The CPU engine reads programs
// lowered in fp32 and counts in fp32 elements (byte offsets become element offsets: it works in
// scalars of that width or wider); a device backend reads the plan's own programs in bytes,
// each tensor with its dtype.
#pragma once
#include <cmath>
#include <string>
#include <vector>

#include "core/check.h"
#include "program/program.h"
#include "spec/read.h"

namespace loraflow::spec {

// The index of `value` in a table of `count` names (op names, places), or -1.
inline int name_index(const char* const* names, int count, const std::string& value) {
  for (int i = 0; i < count; i++) if (value == names[i]) return i;
  return -1;
}

// How a reader counts offsets and sizes: in fp32 elements (4), where every tensor must be fp32,
// or in bytes (1), where tensors are fp32 or bf16.
struct Units {
  int64_t bytes = 4;
};

// A count of bytes that must be whole units; returns units.
inline int64_t units(const Value& o, const std::string& key, const std::string& where, const Units& u) {
  const int64_t bytes = integer(o, key, where);
  LF_CHECK(bytes >= 0 && bytes % u.bytes == 0 && bytes <= (int64_t(1) << 52), where << "." << key << " is not a whole number of " << (u.bytes == 4 ? "fp32 elements" : "bytes"));
  return bytes / u.bytes;
}

// An array of small non-negative integers (tensor ids, parts, classes).
inline std::vector<int> index_list(const Value& a, const std::string& where) {
  LF_CHECK(a.is_array(), where << " must be an array");
  LF_CHECK(a.size() <= (1u << 24), where << " is too long");
  std::vector<int> out;
  out.reserve(a.size());
  for (size_t i = 0; i < a.size(); i++) {
    const Value& v = a.at(i);
    LF_CHECK(v.is_number(), where << " must hold numbers");
    const double d = v.as_number();
    LF_CHECK(d >= 0 && d < (1 << 30) && d == static_cast<double>(static_cast<int>(d)), where << " holds " << d);
    out.push_back(static_cast<int>(d));
  }
  return out;
}

inline std::vector<int> indices(const Value& o, const std::string& key, const std::string& where, bool optional) {
  if (optional && !o.has(key)) return {};
  return index_list(field(o, key, where), where + "." + key);
}

inline DType dtype_of(const Value& v, const std::string& where, const Units& u) {
  LF_CHECK(v.is_string(), where << ".dtype must be a string");
  const std::string& dtype = v.as_string();
  if (u.bytes == 4) {
    LF_CHECK(dtype == "f32", where << " is " << dtype << "; the CPU engine runs fp32 programs");
    return DType::kF32;
  }
  LF_CHECK(dtype == "f32" || dtype == "bf16", where << " is " << dtype << "; programs run in f32 or bf16");
  return dtype == "bf16" ? DType::kBF16 : DType::kF32;
}

inline std::vector<ShapeClassSpec> shape_classes(const Value& a) {
  std::vector<ShapeClassSpec> out;
  for (size_t i = 0; i < a.size(); i++) {
    const std::string w = "programs.classes[" + std::to_string(i) + "]";
    const Value& o = object_at(a, i, w);
    ShapeClassSpec c;
    c.rows = integer(o, "rows", w);
    const Value& parts = array(o, "parts", w);
    int64_t rows = 0;
    for (size_t j = 0; j < parts.size(); j++) {
      const Value& po = object_at(parts, j, w + ".parts[" + std::to_string(j) + "]");
      ShapeClassSpec::Part p;
      p.rows = integer(po, "rows", w);
      p.rank = integer(po, "rank", w);
      p.dropout = boolean(po, "dropout", w);
      for (int m : indices(po, "modules", w, false)) {
        LF_CHECK(m < kModules, w << ": module " << m);
        p.modules |= 1u << m;
      }
      LF_CHECK(p.rows > 0 && p.rank > 0 && p.rank <= (1 << 16), w << ": part " << j << " has bad sizes");
      rows += p.rows;
      c.parts.push_back(p);
    }
    LF_CHECK(!c.parts.empty() && rows == c.rows && c.rows <= (int64_t(1) << 24), w << ": parts of " << rows << " rows for " << c.rows);
    out.push_back(c);
  }
  return out;
}

inline OpSpec program_op(const Value& o, const std::string& w) {
  OpSpec op;
  const std::string& name = text(o, "op", w);
  const int code = name_index(kOpNames, static_cast<int>(OpCode::kCount), name);
  LF_CHECK(code >= 0, w << ": unknown op " << name);
  op.code = static_cast<OpCode>(code);
  op.in = indices(o, "in", w, false);
  op.out = indices(o, "out", w, false);
  op.scratch = indices(o, "scratch", w, true);
  op.parts = indices(o, "parts", w, true);
  if (o.has("weight")) op.weight = static_cast<int>(integer(o, "weight", w));
  if (o.has("module")) op.module = static_cast<int>(integer(o, "module", w));
  if (o.has("layer")) op.layer = static_cast<int>(integer(o, "layer", w));
  if (o.has("chunk")) op.chunk = integer(o, "chunk", w);
  LF_CHECK(op.weight >= -1 && op.module >= -1 && op.module < kModules && op.layer >= -1 && op.chunk >= 0 && op.chunk <= (int64_t(1) << 24), w << ": attribute out of range");
  return op;
}

inline ProgramSpec program(const Value& o, const std::string& w, const Units& u, DType activations) {
  ProgramSpec p;
  p.unit_bytes = u.bytes;
  p.activations = activations;
  p.cls = static_cast<int>(integer(o, "class", w));
  p.stash = units(o, "stashBytes", w, u);
  p.message = units(o, "messageBytes", w, u);
  p.work = units(o, "workBytes", w, u);
  const Value& tensors = array(o, "tensors", w);
  for (size_t i = 0; i < tensors.size(); i++) {
    const std::string tw = w + ".tensors[" + std::to_string(i) + "]";
    const Value& to = object_at(tensors, i, tw);
    TensorSpec t;
    t.name = text(to, "name", tw);
    const std::string& place = text(to, "place", tw);
    const int k = name_index(kPlaceNames, static_cast<int>(Place::kCount), place);
    LF_CHECK(k >= 0, tw << ": unknown place " << place);
    t.place = static_cast<Place>(k);
    t.offset = units(to, "offset", tw, u);
    t.dtype = dtype_of(field(to, "dtype", tw), tw, u);
    LF_CHECK(dtype_bytes(t.dtype) % u.bytes == 0 && t.offset * u.bytes % dtype_bytes(t.dtype) == 0, tw << ": offset not aligned to its dtype");
    t.numel = 1;
    for (int d : indices(to, "shape", tw, false)) {
      LF_CHECK(d > 0 && t.numel <= (int64_t(1) << 40) / d, tw << ": shape out of range");
      t.shape.push_back(d);
      t.numel *= d;
    }
    LF_CHECK(!t.shape.empty(), tw << ": no shape");
    t.extent = t.numel * dtype_bytes(t.dtype) / u.bytes;
    p.tensors.push_back(std::move(t));
  }
  for (const char* list : {"forward", "backward"}) {
    const Value& ops = array(o, list, w);
    for (size_t i = 0; i < ops.size(); i++) {
      const std::string ow = w + "." + list + "[" + std::to_string(i) + "]";
      (std::string(list) == "forward" ? p.forward : p.backward).push_back(program_op(object_at(ops, i, ow), ow));
    }
  }
  return p;
}

inline std::vector<WeightSlotSpec> weight_slots(const Value& a, const std::string& w, const Units& u) {
  std::vector<WeightSlotSpec> out;
  for (size_t i = 0; i < a.size(); i++) {
    const std::string sw = w + "[" + std::to_string(i) + "]";
    const Value& o = object_at(a, i, sw);
    WeightSlotSpec s;
    s.name = text(o, "name", sw);
    s.offset = units(o, "offset", sw, u);
    s.dtype = dtype_of(field(o, "dtype", sw), sw, u);
    const std::vector<int> shape = indices(o, "shape", sw, false);
    LF_CHECK(shape.size() == 1 || shape.size() == 2, sw << ": a weight is a vector or a matrix");
    s.rows = shape[0];
    s.cols = shape.size() == 2 ? shape[1] : 1;
    out.push_back(s);
  }
  return out;
}

// The stages' programs (plan.json's programs; in fp32 when counted in fp32 elements): classes,
// each phase's class per micro-batch, and per stage its weight table, program set and round layouts.
inline ProgramsSpec programs(const Value& o, const Units& u = {}) {
  ProgramsSpec t;
  const DType activations = dtype_of(field(o, "dtype", "programs"), "programs", u);
  t.classes = shape_classes(array(o, "classes", "programs"));
  LF_CHECK(!t.classes.empty() && t.classes.size() <= 65536, "programs: " << t.classes.size() << " shape classes");
  const Value& class_of = array(o, "classOf", "programs");
  for (size_t p = 0; p < class_of.size(); p++) {
    std::vector<int> ids = index_list(class_of.at(p), "programs.classOf[" + std::to_string(p) + "]");
    for (int k : ids) LF_CHECK(static_cast<size_t>(k) < t.classes.size(), "programs.classOf[" << p << "] names class " << k);
    t.class_of.push_back(std::move(ids));
  }
  const Value& sets = array(o, "sets", "programs");
  std::vector<std::vector<ProgramSpec>> programs;
  for (size_t k = 0; k < sets.size(); k++) {
    LF_CHECK(sets.at(k).is_array(), "programs.sets[" << k << "] must be an array");
    const Value& set = sets.at(k);
    programs.emplace_back();
    for (size_t i = 0; i < set.size(); i++) {
      const std::string pw = "programs.sets[" + std::to_string(k) + "][" + std::to_string(i) + "]";
      programs.back().push_back(program(object_at(set, i, pw), pw, u, activations));
    }
  }
  const Value& stages = array(o, "stages", "programs");
  LF_CHECK(stages.size() <= 4096, "programs: " << stages.size() << " stages");
  t.stages.resize(stages.size());
  for (size_t s = 0; s < stages.size(); s++) {
    const std::string w = "programs.stages[" + std::to_string(s) + "]";
    const Value& so = object_at(stages, s, w);
    StageProgramsSpec& ss = t.stages[s];
    ss.weights = weight_slots(array(so, "weights", w), w + ".weights", u);
    ss.weight_elems = units(so, "weightBytes", w, u);
    ss.adapter_elems = units(so, "adapterBytes", w, u);
    const int64_t set = integer(so, "set", w);
    LF_CHECK(set >= 0 && static_cast<size_t>(set) < programs.size(), w << ": set " << set << " does not exist");
    ss.programs = programs[static_cast<size_t>(set)];
    ss.round_elems = units(so, "roundBytes", w, u);
    ss.work_elems = units(so, "workBytes", w, u);
    LF_CHECK(units(so, "activationBytes", w, u) == ss.round_elems + ss.work_elems, w << ": activationBytes is not roundBytes + workBytes");
    const Value& rounds = array(so, "rounds", w);
    for (size_t p = 0; p < rounds.size(); p++) {
      const std::string rw = w + ".rounds[" + std::to_string(p) + "]";
      const Value& ro = object_at(rounds, p, rw);
      LF_CHECK(units(ro, "bytes", rw, u) <= ss.round_elems, rw << ": past the round region");
      const Value& offsets = array(ro, "offsets", rw);
      LF_CHECK(offsets.size() % 5 == 0, rw << ".offsets come in fives");
      std::vector<RoundBuffers> buffers(offsets.size() / 5);
      for (size_t i = 0; i < offsets.size(); i++) {
        LF_CHECK(offsets.at(i).is_number(), rw << ".offsets must hold numbers");
        const double bytes = offsets.at(i).as_number();
        const double unit = static_cast<double>(u.bytes);
        LF_CHECK(bytes == -1 || (bytes >= 0 && bytes <= unit * static_cast<double>(ss.round_elems) && std::fmod(bytes, 4.0) == 0), rw << ".offsets[" << i << "] is " << bytes);
        const int64_t at = bytes < 0 ? -1 : static_cast<int64_t>(bytes) / u.bytes;
        RoundBuffers& b = buffers[i / 5];
        int64_t* slot[5] = {&b.stash, &b.act_in, &b.act_out, &b.grad_in, &b.grad_out};
        *slot[i % 5] = at;
      }
      ss.rounds.push_back(std::move(buffers));
    }
  }
  return t;
}

}  // namespace loraflow::spec
