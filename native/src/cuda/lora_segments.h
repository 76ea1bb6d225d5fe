// lora_segments.h: the LoRA ops of a fused micro-batch (model/lora.h's math) as segmented GEMMs
// (kernels/segmented_gemm.h), one segment per adapter part, at most kMaxSegments a launch.
//   shrink:    u_i = dropout(x_i) A_i^T
//   expand:    y_i += s_i u_i B_i^T
//   backward:  dB_i += s_i dY_i^T u_i and G_i = s_i dY_i B_i (one launch), then
//              dA_i += G_i^T dropout(x_i) and dx_i += dropout(G_i A_i) (the next: they read G)
// The mask is regenerated from the row keys, never stored. Building the launches allocates
// nothing: each batch is handed to `launch` as it fills.
#pragma once
#include <cstdint>

#include "cuda/kernels/segmented_gemm.h"

namespace loraflow::cuda {

// One adapter's rows of the micro-batch and its weights at a LoRA site (device pointers).
struct LoraPart {
  int64_t row0 = 0, rows = 0, rank = 0;
  const float* A = nullptr;  // [r, in]
  const float* B = nullptr;  // [out, r]
  float* dA = nullptr;       // [r, in]
  float* dB = nullptr;       // [out, r]
  float* u = nullptr;        // [rows, r]
  float* G = nullptr;        // [rows, r] (backward)
  float scale = 1;
  double dropout = 0;
  uint64_t module_key = 0;
  const uint64_t* row_keys = nullptr;  // [T] of the micro-batch
};

// The activations around a LoRA site: x [T, in], y (forward) or dy (backward) [T, out], dx [T, in].
struct LoraSiteRows {
  int64_t in = 0, out = 0;
  Storage type = Storage::kBF16;
  const void* x = nullptr;
  void* y = nullptr;
  const void* dy = nullptr;
  void* dx = nullptr;  // null: no input gradient wanted
};

namespace detail {

inline int64_t elem_bytes(Storage t) { return t == Storage::kBF16 ? 2 : 4; }

inline const void* rows_at(const void* p, Storage t, int64_t row, int64_t width) { return static_cast<const char*>(p) + row * width * elem_bytes(t); }
inline void* rows_at(void* p, Storage t, int64_t row, int64_t width) { return static_cast<char*>(p) + row * width * elem_bytes(t); }

// Collects segments and hands each full batch to `launch`.
template <typename Launch>
struct Batcher {
  Launch& launch;
  SegmentedGemm::Params params{};
  void add(const Segment& s) {
    if (s.M == 0 || s.N == 0) return;
    params.segments[params.count++] = s;
    if (params.count == SegmentedGemm::kMaxSegments) flush();
  }
  void flush() {
    if (params.count > 0) launch(params);
    params.count = 0;
  }
};

inline Segment masked_on(Segment s, MaskOn on, const LoraPart& p) {
  if (p.dropout == 0) return s;
  s.mask = on;
  s.row_keys = p.row_keys + p.row0;
  s.module_key = p.module_key;
  s.dropout = p.dropout;
  return s;
}

}  // namespace detail

template <typename Launch>
void lora_shrink_launches(const LoraSiteRows& site, const LoraPart* parts, int count, Launch&& launch) {
  detail::Batcher<Launch> batch{launch};
  for (int i = 0; i < count; i++) {
    const LoraPart& p = parts[i];
    Segment s;
    s.a = {detail::rows_at(site.x, site.type, p.row0, site.in), site.in, site.type, false};
    s.b = {p.A, site.in, Storage::kF32, true};
    s.c = p.u;
    s.ldc = p.rank;
    s.M = p.rows, s.N = p.rank, s.K = site.in;
    batch.add(detail::masked_on(s, MaskOn::kA, p));
  }
  batch.flush();
}

template <typename Launch>
void lora_expand_launches(const LoraSiteRows& site, const LoraPart* parts, int count, Launch&& launch) {
  detail::Batcher<Launch> batch{launch};
  for (int i = 0; i < count; i++) {
    const LoraPart& p = parts[i];
    Segment s;
    s.a = {p.u, p.rank, Storage::kF32, false};
    s.b = {p.B, p.rank, Storage::kF32, true};
    s.c = detail::rows_at(site.y, site.type, p.row0, site.out);
    s.ldc = site.out;
    s.c_type = site.type;
    s.M = p.rows, s.N = site.out, s.K = p.rank;
    s.alpha = p.scale, s.beta = 1;
    batch.add(s);
  }
  batch.flush();
}

// First launch of the backward: dB and G.
template <typename Launch>
void lora_backward_first_launches(const LoraSiteRows& site, const LoraPart* parts, int count, Launch&& launch) {
  detail::Batcher<Launch> batch{launch};
  for (int i = 0; i < count; i++) {
    const LoraPart& p = parts[i];
    const void* dy = detail::rows_at(site.dy, site.type, p.row0, site.out);
    Segment db;  // dB[out, r] += s dY^T u
    db.a = {dy, site.out, site.type, true};
    db.b = {p.u, p.rank, Storage::kF32, false};
    db.c = p.dB;
    db.ldc = p.rank;
    db.M = site.out, db.N = p.rank, db.K = p.rows;
    db.alpha = p.scale, db.beta = 1;
    batch.add(db);
    Segment g;  // G[rows, r] = s dY B
    g.a = {dy, site.out, site.type, false};
    g.b = {p.B, p.rank, Storage::kF32, false};
    g.c = p.G;
    g.ldc = p.rank;
    g.M = p.rows, g.N = p.rank, g.K = site.out;
    g.alpha = p.scale;
    batch.add(g);
  }
  batch.flush();
}

// Second launch of the backward: dA and dx, which read G.
template <typename Launch>
void lora_backward_second_launches(const LoraSiteRows& site, const LoraPart* parts, int count, Launch&& launch) {
  detail::Batcher<Launch> batch{launch};
  for (int i = 0; i < count; i++) {
    const LoraPart& p = parts[i];
    Segment da;  // dA[r, in] += G^T dropout(x)
    da.a = {p.G, p.rank, Storage::kF32, true};
    da.b = {detail::rows_at(site.x, site.type, p.row0, site.in), site.in, site.type, false};
    da.c = p.dA;
    da.ldc = site.in;
    da.M = p.rank, da.N = site.in, da.K = p.rows;
    da.beta = 1;
    batch.add(detail::masked_on(da, MaskOn::kB, p));
    if (!site.dx) continue;
    Segment dx;  // dx[rows, in] += dropout(G A)
    dx.a = {p.G, p.rank, Storage::kF32, false};
    dx.b = {p.A, site.in, Storage::kF32, false};
    dx.c = detail::rows_at(site.dx, site.type, p.row0, site.in);
    dx.ldc = site.in;
    dx.c_type = site.type;
    dx.M = p.rows, dx.N = site.in, dx.K = p.rank;
    dx.beta = 1;
    batch.add(detail::masked_on(dx, MaskOn::kOut, p));
  }
  batch.flush();
}

}  // namespace loraflow::cuda
