// stage_engine.h: what the trainer's loop (trainer.cc) asks of one stage, whatever runs it: the
// CPU engine (train/cpu_stage.h) or a GPU (cuda/cuda_stage.h). The loop owns the schedule (which
// action runs when), the micro-batches' rows, the gradient-norm reduction over stages, the clip
// and the learning rate, so every backend trains by the same rules; an engine owns the stage's
// memory (base weights, adapter state, the activation arena) and runs its actions in it.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "model/rows.h"
#include "program/program.h"
#include "train/optimizer.h"
#include "train/transport.h"

namespace loraflow {

struct TrainSpec;

// An adapter's LoRA weights by (layer, module): A [r, in], B [out, r].
using SiteWeights = std::map<std::pair<int64_t, int>, std::pair<std::vector<float>, std::vector<float>>>;
// An adapter's optimizer moments by (layer, module): [moments, na + nb], each moment A's values
// then B's (AdamW: exp_avg then exp_avg_sq; SGD: momentum_buffer).
using SiteMoments = std::map<std::pair<int64_t, int>, std::vector<float>>;

struct StageFootprint {
  int64_t weight_bytes = 0, adapter_bytes = 0, activation_bytes = 0;
};

class StageEngine {
 public:
  virtual ~StageEngine() = default;
  // On the stage's worker thread, before its first action and after its last.
  virtual void begin() {}
  virtual void end() {}
  // Whether the loop's heap allocations are counted: the CPU engine makes none.
  virtual bool counts_allocations() const { return false; }

  // F and B of a micro-batch of shape class `cls` whose buffers are `at` in the round's region.
  virtual void forward(int cls, const RoundBuffers& at, const MicroBatchRows& rows) = 0;
  // After a forward on the head's stage: each part's grad_scale * (sum of its losses).
  virtual const std::vector<double>& part_losses() const = 0;
  virtual void backward(int cls, const RoundBuffers& at, const MicroBatchRows& rows) = 0;

  // A SEND or RECV of the [T, C] rows of class `cls` at `offset` of the activation arena;
  // messages on one link and channel arrive in the order sent, tagged with their micro-batch.
  virtual void send(int peer, Channel ch, int64_t tag, int cls, int64_t offset) = 0;
  virtual void recv(int peer, Channel ch, int64_t tag, int cls, int64_t offset, const Describe& what) = 0;

  // The squared norm of each of the adapter's sites here, by global site id (layer * kModules +
  // module), in site order: the stage's share of the clip.
  virtual void squared_norms(int adapter, std::vector<std::pair<int64_t, double>>& terms) = 0;
  // One optimizer step of the adapter's sites here, with the step's scalars; zeroes the gradients.
  virtual void step(int adapter, const StepScalars& scalars) = 0;
  // The adapter's weights on this stage, added to `out`.
  virtual void weights(int adapter, SiteWeights& out) = 0;
  // The adapter's optimizer moments on this stage, added to `out` (nothing for plain SGD).
  virtual void moments(int adapter, SiteMoments& out) = 0;

  virtual StageFootprint footprint() const = 0;
  // Another stage failed: whatever this one may wait in besides the loop's Rendezvous (a
  // communicator) must fail too, never hang.
  virtual void abort() {}
};

// A link the schedule uses: from one stage to another on one channel, with the most messages
// one round sends on it.
struct LinkSpec {
  int from = 0, to = 0;
  Channel channel = Channel::kActivations;
  size_t messages = 0;
};

// Builds every stage's engine for a spec; the engines may wait through `rendezvous` (messages).
// It may move what it copies out of the spec (the base weights).
using MakeStageEngines = std::function<std::vector<std::unique_ptr<StageEngine>>(TrainSpec& spec, Rendezvous& rendezvous, const std::vector<LinkSpec>& links)>;

}  // namespace loraflow
