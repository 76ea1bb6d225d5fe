// program.h: a stage's compiled programs as the engine holds them (compiler/programs/types.ts):
// straight-line ops over tensors with static places. Offsets and sizes are in the reader's
// units: fp32 elements for the CPU engine, which runs programs lowered in fp32 (and the double
// oracle scales them, which keeps every alignment and non-overlap); bytes for a backend that
// runs the plan's own programs, whose tensors differ in dtype (bf16 activations, fp32 norms).
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

// A tensor's storage type (compiler/programs/types.ts TensorDtype).
enum class DType : int { kF32 = 0, kBF16 };
inline int64_t dtype_bytes(DType t) { return t == DType::kBF16 ? 2 : 4; }
inline const char* dtype_name(DType t) { return t == DType::kBF16 ? "bf16" : "f32"; }

struct TensorSpec {
  std::string name;
  Place place = Place::kWork;
  int64_t offset = 0;  // units from the start of its place
  int64_t numel = 0;
  int64_t extent = 0;  // units its elements span
  DType dtype = DType::kF32;
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
  int64_t stash = 0, message = 0, work = 0;  // units
  int64_t unit_bytes = 4;                    // what a unit is: 4 (fp32 elements) or 1 (bytes)
  DType activations = DType::kF32;           // the [T, C] rows stages hand each other
  // Units of `elements` activations.
  int64_t activation_units(int64_t elements) const { return elements * dtype_bytes(activations) / unit_bytes; }
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

// Where a micro-batch's slot and buffers sit in the activation arena during one round (units;
// -1: none), by micro-batch id.
struct RoundBuffers {
  int64_t stash = -1, act_in = -1, act_out = -1, grad_in = -1, grad_out = -1;
};

struct WeightSlotSpec {
  std::string name;
  DType dtype = DType::kF32;
  int64_t offset = 0;           // units in the weights arena
  int64_t rows = 0, cols = 1;   // [out, in] of a matrix, [n] x 1 of a vector
  int64_t numel() const { return rows * cols; }
};

// One stage's share of a plan's programs.
struct StageProgramsSpec {
  std::vector<WeightSlotSpec> weights;            // the weights arena's layout
  int64_t weight_elems = 0;                       // the weights arena's size
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
