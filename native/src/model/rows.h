// rows.h: the rows of one micro-batch as the engine sees them: its tokens, labels and packing
// tables, and the adapters whose row segments it holds.
#pragma once
#include <cstdint>
#include <vector>

namespace loraflow {

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

  // Empties the tables, keeping their memory: rows are rebuilt in place every micro-batch.
  void clear() {
    T = 0;
    tokens.clear();
    targets.clear();
    seg_start.clear();
    pos.clear();
    row_keys.clear();
    parts.clear();
  }
  void reserve(int64_t rows, size_t part_count) {
    tokens.reserve(static_cast<size_t>(rows));
    targets.reserve(static_cast<size_t>(rows));
    seg_start.reserve(static_cast<size_t>(rows));
    pos.reserve(static_cast<size_t>(rows));
    row_keys.reserve(static_cast<size_t>(rows));
    parts.reserve(part_count);
  }
};

}  // namespace loraflow
