// stage_layout.h: what every stage engine checks of a plan before it allocates anything, and how
// it lays out what it holds, so that the CPU engine and a GPU read one plan the same way: the
// stage's base weights in its weight table's order, its adapters' state (per site: A, B, their
// gradients, the optimizer's moments), and the rounds' buffers inside the activation arena.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/check.h"
#include "program/executor.h"
#include "train/trainer.h"

namespace loraflow {

// The stage's layers [l0, l1): a layer split between two stages is on both.
inline std::pair<int64_t, int64_t> stage_layers(const StageSpec& ss) {
  const int64_t l0 = ss.first_block / 2;
  return {l0, ss.last_block == ss.first_block ? l0 : (ss.last_block + 1) / 2};
}

inline bool stage_has_site(const StageSpec& ss, std::pair<int64_t, int> site) {
  const int64_t block = module_block(site.first, site.second);
  return block >= ss.first_block && block < ss.last_block;
}

// Every base tensor the stage reads, in its weight table's order, checked against the plan's
// table (the same tensors, in order, end to end, offsets in units of unit_bytes). Returns
// (name, elements).
std::vector<std::pair<std::string, int64_t>> stage_weight_tensors(const LlamaConfig& c, const StageSpec& ss, size_t stage, int64_t unit_bytes);

// A base weight of the spec with n values, all finite (one NaN would make every loss NaN).
const std::vector<float>& checked_base_weight(const TrainSpec& spec, const std::string& name, int64_t n);

// The values of the stage's adapter state: A, B, their gradients and moments, of every site it
// holds (what the plan's adapter arena must hold).
int64_t adapter_state_values(const TrainSpec& spec, const StageSpec& ss, size_t stage);

// A site's optimizer moments to start from (resuming), checked to hold `moments` buffers of
// `n` (A's and B's) values each; null when the adapter starts from zeros.
const std::vector<float>* initial_moments(const AdapterSpec& a, std::pair<int64_t, int> site, int64_t n);

// Checks that each site's initial A and B have the adapter's shapes.
void check_site_shapes(const TrainSpec& spec, const AdapterSpec& a, std::pair<int64_t, int> site, const std::vector<float>& A, const std::vector<float>& B);

// Every micro-batch's buffers of every phase inside the stage's round region.
template <typename S>
void check_stage_rounds(const TrainSpec& spec, const StageSpec& ss, size_t stage, const ProgramExecutor<S>& exec) {
  const std::string where = "stage " + std::to_string(stage);
  LF_CHECK(ss.compiled.work_elems >= exec.max_work(), where << ": a workspace of " << ss.compiled.work_elems << " units for programs that need " << exec.max_work());
  LF_CHECK(ss.compiled.rounds.size() == spec.phases.size(), where << ": round layouts for " << ss.compiled.rounds.size() << " of " << spec.phases.size() << " phases");
  for (size_t p = 0; p < ss.compiled.rounds.size(); p++) {
    LF_CHECK(ss.compiled.rounds[p].size() == spec.phases[p].micro_batches.size() && spec.class_of[p].size() == ss.compiled.rounds[p].size(),
             where << ": phase " << p << " lays out " << ss.compiled.rounds[p].size() << " micro-batches");
    for (size_t mb = 0; mb < ss.compiled.rounds[p].size(); mb++) {
      exec.check_buffers(spec.class_of[p][mb], ss.compiled.rounds[p][mb], ss.compiled.round_elems, where + ": phase " + std::to_string(p) + "'s micro-batch " + std::to_string(mb));
    }
  }
}

}  // namespace loraflow
