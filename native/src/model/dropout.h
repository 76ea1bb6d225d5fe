// dropout.h: LoRA dropout masks that are a pure function of where an element is, not of when or
// with what it was computed: mask(row_key, module_key, column). Row keys name (adapter seed,
// step, sequence of the step, token position), so a sequence gets the same mask whether its
// micro-batch is fused with other adapters, split differently, or run on another stage count;
// and backward regenerates the mask instead of storing it. The CUDA kernels compute the same
// masks on the device (LF_HD), bit for bit.
#pragma once
#include <cstdint>

#include "core/host_device.h"

namespace loraflow {

LF_HD inline uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

LF_HD inline uint64_t mix_key(uint64_t a, uint64_t b) { return splitmix64(a ^ splitmix64(b)); }

// The key of one token row: adapter seed, optimizer step, sequence index within the step, position.
LF_HD inline uint64_t dropout_row_key(uint64_t seed, uint64_t step, uint64_t sequence, uint64_t position) {
  return mix_key(mix_key(mix_key(seed, step), sequence), position);
}

// The key of one LoRA site: layer and module (0..6 in q k v o gate up down order).
LF_HD inline uint64_t dropout_module_key(uint64_t layer, uint64_t module) { return splitmix64((layer << 8) | module) ^ 0x5EEDull; }

// Whether element `col` of the row is kept, with probability 1 - p.
LF_HD inline bool dropout_keep(uint64_t row_key, uint64_t module_key, uint64_t col, double p) {
  const uint64_t bits = splitmix64(row_key ^ module_key ^ (col * 0xD6E8FEB86659FD93ull));
  const double u = static_cast<double>(bits >> 11) * (1.0 / 9007199254740992.0);  // [0, 1)
  return u >= p;
}

}  // namespace loraflow
