// cpu_stage.h: a stage trained on CPU threads: its programs on the CPU backend in fp32, in three
// host arenas allocated once at the planned sizes (base weights, adapter state, activations),
// its messages through the in-process transport, which copies them at the send. Nothing in its
// actions allocates.
#pragma once
#include <memory>
#include <vector>

#include "train/stage_engine.h"

namespace loraflow {

// The CPU engine of every stage of the spec.
std::vector<std::unique_ptr<StageEngine>> cpu_stage_engines(TrainSpec& spec, Rendezvous& rendezvous, const std::vector<LinkSpec>& links);

}  // namespace loraflow
