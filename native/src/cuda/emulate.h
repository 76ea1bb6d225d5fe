// emulate.h: runs a phase-split kernel (phase.h) on the CPU, as CI's stand-in for the GPU. Every
// block runs on its own, its threads phase by phase: all threads finish phase k before any starts
// phase k + 1, which is exactly what the barriers promise and no more. Within a phase the threads
// run in the order asked for: a kernel whose result depends on it has a race. Shared memory and
// per-thread state start as NaN bytes, so a read of anything not written first shows.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <type_traits>
#include <vector>

#include "cuda/phase.h"

namespace loraflow::cuda {

enum class ThreadOrder { kForward, kReverse, kShuffled };

template <typename K>
void emulate(const typename K::Params& params, ThreadOrder order, uint64_t seed = 1) {
  static_assert(std::is_trivially_copyable<typename K::Shared>::value, "shared memory must be plain data");
  static_assert(std::is_trivially_copyable<typename K::Thread>::value, "per-thread state must be plain data");
  const Dim3 grid = K::grid(params);
  std::vector<int> threads(K::kThreads);
  std::iota(threads.begin(), threads.end(), 0);
  if (order == ThreadOrder::kReverse) std::reverse(threads.begin(), threads.end());
  std::mt19937_64 rng(seed);
  auto shared = std::make_unique<typename K::Shared>();
  std::vector<typename K::Thread> state(K::kThreads);
  for (unsigned z = 0; z < grid.z; z++) {
    for (unsigned y = 0; y < grid.y; y++) {
      for (unsigned x = 0; x < grid.x; x++) {
        std::memset(static_cast<void*>(shared.get()), 0xff, sizeof(typename K::Shared));
        std::memset(static_cast<void*>(state.data()), 0xff, sizeof(typename K::Thread) * state.size());
        const int phases = K::phases(params);
        for (int phase = 0; phase < phases; phase++) {
          if (order == ThreadOrder::kShuffled) std::shuffle(threads.begin(), threads.end(), rng);
          for (int t : threads) {
            At at;
            at.block = {x, y, z};
            at.grid = grid;
            at.thread = t;
            K::run(phase, params, *shared, state[static_cast<size_t>(t)], at);
          }
        }
      }
    }
  }
}

}  // namespace loraflow::cuda
