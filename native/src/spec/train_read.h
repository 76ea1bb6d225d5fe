// train_read.h: a training spec (a lowered plan, base weights, initial adapters, tokenised data,
// and where it runs) read from its tree (spec/value.h) into the trainer's TrainSpec, every index
// the engine will follow checked at this boundary: the same checks whether it came from
// JavaScript or from a run file (the standalone driver).
#pragma once
#include <string>
#include <vector>

#include "spec/value.h"
#include "train/trainer.h"

namespace loraflow::spec {

// Where a spec trains: "cpu" (the default), "cuda" (GPUs) or "cuda-emulated" (EmuDevices, the
// fake cuBLASLt and NCCL through LORAFLOW_CUBLASLT and LORAFLOW_NCCL); `devices` gives each
// stage's GPU.
struct Placement {
  std::string backend = "cpu";
  std::vector<int> devices;
};

Placement read_placement(Value& spec);

// Moves the spec's arrays out (the tree keeps its shape, with empty leaves).
TrainSpec read_train_spec(Value& spec, const Placement& placement);

}  // namespace loraflow::spec
