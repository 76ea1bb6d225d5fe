// program_args.h: compiled programs (plan.json's `programs`) read from their JavaScript form into
// the engine's, with every field checked for type and range. The CPU engine reads programs
// lowered in fp32 and counts in fp32 elements (byte offsets become element offsets: it works in
// scalars of that width or wider); a device backend reads the plan's own programs in bytes,
// each tensor with its dtype.
#pragma once
#include <napi.h>

#include <cmath>
#include <string>
#include <vector>

#include "binding/js_args.h"
#include "core/check.h"
#include "program/program.h"

namespace loraflow::js {

// Element i of an array, which must be an object; `where` names it.
inline Napi::Object object_at(const Napi::Array& a, uint32_t i, const std::string& where) {
  LF_CHECK(a.Get(i).IsObject(), where << " must be an object");
  return a.Get(i).As<Napi::Object>();
}

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
inline int64_t units(const Napi::Object& o, const std::string& key, const std::string& where, const Units& u) {
  const int64_t bytes = integer(o, key, where);
  LF_CHECK(bytes >= 0 && bytes % u.bytes == 0 && bytes <= (int64_t(1) << 52), where << "." << key << " is not a whole number of " << (u.bytes == 4 ? "fp32 elements" : "bytes"));
  return bytes / u.bytes;
}

// An array of small non-negative integers (tensor ids, parts, classes).
inline std::vector<int> index_list(const Napi::Value& value, const std::string& where) {
  LF_CHECK(value.IsArray(), where << " must be an array");
  Napi::Array a = value.As<Napi::Array>();
  LF_CHECK(a.Length() <= (1u << 24), where << " is too long");
  std::vector<int> out;
  out.reserve(a.Length());
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value v = a.Get(i);
    LF_CHECK(v.IsNumber(), where << " must hold numbers");
    const double d = v.As<Napi::Number>().DoubleValue();
    LF_CHECK(d >= 0 && d < (1 << 30) && d == static_cast<double>(static_cast<int>(d)), where << " holds " << d);
    out.push_back(static_cast<int>(d));
  }
  return out;
}

inline std::vector<int> indices(const Napi::Object& o, const std::string& key, const std::string& where, bool optional) {
  if (optional && !o.Has(key)) return {};
  return index_list(field(o, key, where), where + "." + key);
}

inline DType dtype_of(const Napi::Value& v, const std::string& where, const Units& u) {
  LF_CHECK(v.IsString(), where << ".dtype must be a string");
  const std::string dtype = v.As<Napi::String>();
  if (u.bytes == 4) {
    LF_CHECK(dtype == "f32", where << " is " << dtype << "; the CPU engine runs fp32 programs");
    return DType::kF32;
  }
  LF_CHECK(dtype == "f32" || dtype == "bf16", where << " is " << dtype << "; programs run in f32 or bf16");
  return dtype == "bf16" ? DType::kBF16 : DType::kF32;
}

inline std::vector<ShapeClassSpec> shape_classes(const Napi::Array& a) {
  std::vector<ShapeClassSpec> out;
  for (uint32_t i = 0; i < a.Length(); i++) {
    const std::string w = "programs.classes[" + std::to_string(i) + "]";
    Napi::Object o = object_at(a, i, w);
    ShapeClassSpec c;
    c.rows = integer(o, "rows", w);
    Napi::Array parts = array(o, "parts", w);
    int64_t rows = 0;
    for (uint32_t j = 0; j < parts.Length(); j++) {
      Napi::Object po = object_at(parts, j, w + ".parts[" + std::to_string(j) + "]");
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

inline OpSpec program_op(const Napi::Object& o, const std::string& w) {
  OpSpec op;
  const std::string name = field(o, "op", w).As<Napi::String>();
  const int code = name_index(kOpNames, static_cast<int>(OpCode::kCount), name);
  LF_CHECK(code >= 0, w << ": unknown op " << name);
  op.code = static_cast<OpCode>(code);
  op.in = indices(o, "in", w, false);
  op.out = indices(o, "out", w, false);
  op.scratch = indices(o, "scratch", w, true);
  op.parts = indices(o, "parts", w, true);
  if (o.Has("weight")) op.weight = static_cast<int>(integer(o, "weight", w));
  if (o.Has("module")) op.module = static_cast<int>(integer(o, "module", w));
  if (o.Has("layer")) op.layer = static_cast<int>(integer(o, "layer", w));
  if (o.Has("chunk")) op.chunk = integer(o, "chunk", w);
  LF_CHECK(op.weight >= -1 && op.module >= -1 && op.module < kModules && op.layer >= -1 && op.chunk >= 0 && op.chunk <= (int64_t(1) << 24), w << ": attribute out of range");
  return op;
}

inline ProgramSpec program(const Napi::Object& o, const std::string& w, const Units& u, DType activations) {
  ProgramSpec p;
  p.unit_bytes = u.bytes;
  p.activations = activations;
  p.cls = static_cast<int>(integer(o, "class", w));
  p.stash = units(o, "stashBytes", w, u);
  p.message = units(o, "messageBytes", w, u);
  p.work = units(o, "workBytes", w, u);
  Napi::Array tensors = array(o, "tensors", w);
  for (uint32_t i = 0; i < tensors.Length(); i++) {
    const std::string tw = w + ".tensors[" + std::to_string(i) + "]";
    Napi::Object to = object_at(tensors, i, tw);
    TensorSpec t;
    t.name = field(to, "name", tw).As<Napi::String>();
    const std::string place = field(to, "place", tw).As<Napi::String>();
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
    Napi::Array ops = array(o, list, w);
    for (uint32_t i = 0; i < ops.Length(); i++) {
      const std::string ow = w + "." + list + "[" + std::to_string(i) + "]";
      (std::string(list) == "forward" ? p.forward : p.backward).push_back(program_op(object_at(ops, i, ow), ow));
    }
  }
  return p;
}

inline std::vector<WeightSlotSpec> weight_slots(const Napi::Array& a, const std::string& w, const Units& u) {
  std::vector<WeightSlotSpec> out;
  for (uint32_t i = 0; i < a.Length(); i++) {
    const std::string sw = w + "[" + std::to_string(i) + "]";
    Napi::Object o = object_at(a, i, sw);
    WeightSlotSpec s;
    s.name = field(o, "name", sw).As<Napi::String>();
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
inline ProgramsSpec programs(const Napi::Object& o, const Units& u = {}) {
  ProgramsSpec t;
  const DType activations = dtype_of(field(o, "dtype", "programs"), "programs", u);
  t.classes = shape_classes(array(o, "classes", "programs"));
  LF_CHECK(!t.classes.empty() && t.classes.size() <= 65536, "programs: " << t.classes.size() << " shape classes");
  Napi::Array class_of = array(o, "classOf", "programs");
  for (uint32_t p = 0; p < class_of.Length(); p++) {
    std::vector<int> ids = index_list(class_of.Get(p), "programs.classOf[" + std::to_string(p) + "]");
    for (int k : ids) LF_CHECK(static_cast<size_t>(k) < t.classes.size(), "programs.classOf[" << p << "] names class " << k);
    t.class_of.push_back(std::move(ids));
  }
  Napi::Array sets = array(o, "sets", "programs");
  std::vector<std::vector<ProgramSpec>> programs;
  for (uint32_t k = 0; k < sets.Length(); k++) {
    LF_CHECK(sets.Get(k).IsArray(), "programs.sets[" << k << "] must be an array");
    Napi::Array set = sets.Get(k).As<Napi::Array>();
    programs.emplace_back();
    for (uint32_t i = 0; i < set.Length(); i++) {
      const std::string pw = "programs.sets[" + std::to_string(k) + "][" + std::to_string(i) + "]";
      programs.back().push_back(program(object_at(set, i, pw), pw, u, activations));
    }
  }
  Napi::Array stages = array(o, "stages", "programs");
  LF_CHECK(stages.Length() <= 4096, "programs: " << stages.Length() << " stages");
  t.stages.resize(stages.Length());
  for (uint32_t s = 0; s < stages.Length(); s++) {
    const std::string w = "programs.stages[" + std::to_string(s) + "]";
    Napi::Object so = object_at(stages, s, w);
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
    Napi::Array rounds = array(so, "rounds", w);
    for (uint32_t p = 0; p < rounds.Length(); p++) {
      const std::string rw = w + ".rounds[" + std::to_string(p) + "]";
      Napi::Object ro = object_at(rounds, p, rw);
      LF_CHECK(units(ro, "bytes", rw, u) <= ss.round_elems, rw << ": past the round region");
      Napi::Array offsets = array(ro, "offsets", rw);
      LF_CHECK(offsets.Length() % 5 == 0, rw << ".offsets come in fives");
      std::vector<RoundBuffers> buffers(offsets.Length() / 5);
      for (uint32_t i = 0; i < offsets.Length(); i++) {
        LF_CHECK(offsets.Get(i).IsNumber(), rw << ".offsets must hold numbers");
        const double bytes = offsets.Get(i).As<Napi::Number>().DoubleValue();
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

}  // namespace loraflow::js
