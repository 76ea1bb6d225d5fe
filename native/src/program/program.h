// program.h: a stage's compiled programs as the engine holds them (compiler/programs/types.ts):
// straight-line ops over tensors with static places. Offsets are in elements of the working
// scalar: the compiler lays programs out in fp32 bytes, and a backend running in another
// precision (the double oracle) scales them, which keeps every alignment and non-overlap.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace loraflow {

// The closed set of ops, in the order of compiler/programs/types.ts PROGRAM_OPS.
enum class OpCode : int {
  kEmbed = 0, kCopy, kAccumulate, kZero,
  kRmsnorm, kRmsnormBwd,
  kLinear, kLinearDx,
  kLoraShrink, kLoraExpand, kLoraBwd,
  kRope, kRopeInv,
  kAttention, kAttentionBwd,
  kSwiglu, kSwigluBwd,
  kAdd,
  kHeadLoss,
  kCount
};

inline const char* const kOpNames[static_cast<int>(OpCode::kCount)] = {
    "embed", "copy", "accumulate", "zero", "rmsnorm", "rmsnorm_bwd", "linear", "linear_dx", "lora_shrink", "lora_expand",
    "lora_bwd", "rope", "rope_inv", "attention", "attention_bwd", "swiglu", "swiglu_bwd", "add", "head_loss"};

// Where a tensor lives (compiler/programs/types.ts TENSOR_PLACES).
enum class Place : int { kStash = 0, kWork, kActIn, kActOut, kGradIn, kGradOut, kCount };

inline const char* const kPlaceNames[static_cast<int>(Place::kCount)] = {"stash", "work", "act_in", "act_out", "grad_in", "grad_out"};

struct TensorSpec {
  std::string name;
  Place place = Place::kWork;
  int64_t offset = 0;  // elements from the start of its place
  int64_t numel = 0;
  std::vector<int64_t> shape;
};

struct OpSpec {
  OpCode code = OpCode::kCopy;
  std::vector<int> in, out, scratch, parts;
  int weight = -1, module = -1, layer = -1;  // layer: counted from the stage's first
  int64_t chunk = 0;
};

// One stage's forward and backward over one shape class.
struct ProgramSpec {
  int cls = 0;
  std::vector<TensorSpec> tensors;
  std::vector<OpSpec> forward, backward;
  int64_t stash = 0, message = 0, work = 0;  // elements
};

// A micro-batch's shape: rows, and per part its rows, rank and target modules.
struct ShapeClassSpec {
  int64_t rows = 0;
  struct Part {
    int64_t rows = 0, rank = 0;
    bool dropout = false;
    uint32_t modules = 0;  // bit m: module m is targeted
  };
  std::vector<Part> parts;
};

// Where a micro-batch's slot and buffers sit in the activation arena during one round (elements;
// -1: none), by micro-batch id.
struct RoundBuffers {
  int64_t stash = -1, act_in = -1, act_out = -1, grad_in = -1, grad_out = -1;
};

struct WeightSlotSpec {
  std::string name;
  int64_t offset = 0;           // elements in the weights arena
  int64_t rows = 0, cols = 1;   // [out, in] of a matrix, [n] x 1 of a vector
  int64_t numel() const { return rows * cols; }
};

// One stage's share of a plan's programs.
struct StageProgramsSpec {
  std::vector<WeightSlotSpec> weights;            // the weights arena's layout
  int64_t adapter_elems = 0;                      // the adapter arena's size
  std::vector<ProgramSpec> programs;              // by shape class
  std::vector<std::vector<RoundBuffers>> rounds;  // [phase][micro-batch id]
  int64_t round_elems = 0, work_elems = 0;        // the activation arena: rounds, then the workspace
};

struct ProgramsSpec {
  std::vector<ShapeClassSpec> classes;
  std::vector<std::vector<int>> class_of;  // [phase][micro-batch id]
  std::vector<StageProgramsSpec> stages;
};

}  // namespace loraflow
