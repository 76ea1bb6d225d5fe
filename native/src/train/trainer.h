// trainer.h: executes a compiled plan, one worker thread per stage, each running its stage's
// action list exactly as compiled, round after round, phase after phase. What runs an action is
// the stage's engine (stage_engine.h): the CPU engine (train/cpu_stage.h, the default) or a GPU
// (cuda/cuda_stage.h); each F and B runs the stage's compiled program for the micro-batch's
// shape in the engine's memory, and SEND/RECV move activations forward and gradients back.
// After its last backward of an adapter's step a stage posts its share of the adapter's squared
// gradient norm; the STEP waits for every stage's share (the global-norm clip) and then updates.
#pragma once
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "model/llama_config.h"
#include "model/rows.h"
#include "program/program.h"
#include "train/optimizer.h"
#include "train/stage_engine.h"
#include "train/transport.h"

namespace loraflow {

// A tokenised, packed dataset of one adapter: N sequences of L tokens each.
struct AdapterData {
  int64_t sequences = 0, seq_len = 0;
  std::vector<int32_t> tokens;     // [N, L]
  std::vector<int32_t> targets;    // [N, L] next-token labels, -100 not counted
  std::vector<int32_t> seg_start;  // [N, L] first position of each token's packed example, within its sequence
  std::vector<int32_t> pos;        // [N, L] RoPE positions
  std::vector<int32_t> order;      // [steps, batch] the sequences of each step
  std::vector<double> step_tokens; // [steps] counted tokens of each step (the loss mean's denominator)
};

struct AdapterSpec {
  std::string name;
  int64_t rank = 0, steps = 0, batch = 0, micro_batch = 0;
  int64_t schedule_steps = 0;  // the length the learning-rate schedule spans (>= steps when a run stops early)
  int64_t save_every = 0;      // a checkpoint every this many steps (0: none)
  int64_t eval_every = 0;      // the weights to evaluate every this many steps (0: none)
  double scale = 1, dropout = 0;
  uint64_t seed = 0;
  OptimizerConfig optimizer;
  // Initial weights by (layer, module): A [r, in], B [out, r]. The sites it has are its targets.
  std::map<std::pair<int64_t, int>, std::pair<std::vector<float>, std::vector<float>>> init;
  // Resuming: the optimizer moments of each site (absent: zeros), and the steps already done
  // (what the phases before TrainSpec::start_round give the adapter).
  std::map<std::pair<int64_t, int>, std::vector<float>> moments;
  int64_t steps_done = 0;
  AdapterData data;
};

enum class Op : int32_t { kF = 0, kB = 1, kSend = 2, kRecv = 3, kStep = 4 };

struct Action {
  Op op;
  int32_t mb;     // micro-batch id (F, B, SEND, RECV)
  Channel what;   // SEND, RECV
  int32_t peer;   // SEND, RECV: the other stage; STEP: the adapter
};

struct PhaseSpec {
  int64_t rounds = 0;
  std::vector<int> adapters;
  struct Part {
    int adapter;
    int64_t step;  // which of the adapter's steps in the round
    int64_t index, sequences;
  };
  std::vector<std::vector<Part>> micro_batches;  // by id
  std::vector<std::vector<Action>> actions;      // by stage
};

// A stage and its compiled programs (plan.json's programs.stages[s], lowered for its engine:
// fp32 in floats for the CPU, the model's dtype in bytes for a GPU).
struct StageSpec {
  int64_t first_block = 0, last_block = 0;
  bool embedding = false, head = false;
  StageProgramsSpec compiled;
};

struct TrainSpec {
  LlamaConfig config;
  std::vector<ShapeClassSpec> classes;
  std::vector<std::vector<int>> class_of;  // [phase][micro-batch id]
  std::vector<StageSpec> stages;
  std::map<std::string, std::vector<float>> weights;  // Hugging Face names, fp32
  std::vector<AdapterSpec> adapters;
  std::vector<PhaseSpec> phases;
  // Rounds already trained, over all phases in order (resuming from a snapshot): the run starts
  // with the next one.
  int64_t start_round = 0;
  // Rounds of the first phase whose actions are timed, one by one, for the measured trace.
  int64_t trace_rounds = 0;
  int blas_threads = 1;
};

struct StepEvent {
  int adapter;
  int64_t step;        // 1-based
  double loss, lr, grad_norm, tokens;
  std::vector<double> busy, wait;  // by stage: seconds so far (live progress)
};

// An adapter after a step, gathered from every stage: a checkpoint of it (weights and optimizer
// moments), every save_every steps and after its last.
struct CheckpointEvent {
  int adapter;
  int64_t step;  // 1-based
  bool save = false, evaluate = false;  // due a checkpoint, an evaluation, or both
  SiteWeights sites;
  SiteMoments moments;
};

// The whole run's state at a round boundary, gathered from every stage: what a resumed run
// starts from (TrainSpec::start_round, AdapterSpec::init, moments, steps_done).
struct Snapshot {
  int64_t rounds_done = 0;          // over all phases
  bool stopped = false;             // the run stops here (the stop flag)
  std::vector<int64_t> steps;       // by adapter: steps done
  std::vector<SiteWeights> weights;  // by adapter
  std::vector<SiteMoments> moments;  // by adapter
};

// One action as it ran, in seconds since the run started: waits end at `waited` (a RECV's
// message, a STEP's gradient norms), the action at `end`.
struct TracedAction {
  Action action;
  int64_t round;
  double start, waited, end;
};

struct StageTimes {
  double busy_seconds = 0, wait_seconds = 0;
  std::vector<TracedAction> trace;  // the first trace_rounds rounds
  int64_t weight_bytes = 0, adapter_bytes = 0, activation_bytes = 0;
};

class Trainer {
 public:
  // make_stages builds each stage's engine (the CPU's unless told otherwise).
  explicit Trainer(TrainSpec spec, const MakeStageEngines& make_stages = {});
  ~Trainer();

  // Runs every phase to the end (or to a requested stop); throws the first stage failure (the
  // others are stopped). on_checkpoint gets an adapter every save_every of its steps and after
  // its last; on_snapshot the run's state after each round (but the last) in which an adapter
  // passed a multiple of its save_every, and after the round a stop ends.
  void run(const std::function<void(const StepEvent&)>& on_step, const std::function<void(CheckpointEvent&&)>& on_checkpoint = {},
           const std::function<void(Snapshot&&)>& on_snapshot = {});

  // A flag another thread sets (JavaScript's Int32Array), read at round ends: once it is non-zero,
  // the stages finish the round the furthest of them is in, the run's state is snapshotted, and
  // run returns. Rounds are the schedule's closed units (no micro-batch crosses one), so that
  // state is exactly an uninterrupted run's at that point.
  void watch_stop_flag(const int32_t* flag) { stop_flag_ = flag; }
  // Rounds done when run returned after a stop; -1 when it ran to the end.
  int64_t stopped_after() const { return stopped_after_; }
  int64_t total_rounds() const;

  // The adapter's LoRA weights now, gathered from the stages: (layer, module) -> (A, B).
  SiteWeights adapter_weights(int adapter) const;

  const std::vector<StageTimes>& stage_times() const { return times_; }
  size_t adapter_count() const { return spec_.adapters.size(); }
  // Heap allocations the stage workers made inside their training loops (-1: not counted, in
  // this build or by these engines).
  int64_t loop_allocations() const { return loop_allocations_; }

 private:
  struct StageState;

  struct Callbacks;
  void worker(int stage, const Callbacks& on);
  void contribute_norm(int stage, int adapter, int64_t step);
  void contribute_checkpoint(int stage, int adapter, int64_t step, bool save, bool evaluate, const std::function<void(CheckpointEvent&&)>& on_checkpoint);
  void contribute_snapshot(int stage, int64_t rounds_done, bool stopped, const std::vector<int64_t>& steps, const std::function<void(Snapshot&&)>& on_snapshot);
  // At the end of round g (global): whether the run stops here; otherwise round g + 1 is registered as started.
  bool stops_after(int64_t g);
  void build_rows(MicroBatchRows& rows, const PhaseSpec& phase, int mb, const std::vector<int64_t>& steps_done, const std::vector<int64_t>& round_base) const;

  TrainSpec spec_;
  std::vector<std::unique_ptr<StageState>> stages_;
  int64_t loop_allocations_ = 0;
  std::vector<StageTimes> times_;
  std::mutex checkpoint_mu_;
  std::map<std::pair<int, int64_t>, std::pair<int, CheckpointEvent>> checkpoints_;  // (adapter, step) -> (stages in, state)
  std::mutex snapshot_mu_;
  std::map<int64_t, std::pair<int, Snapshot>> snapshots_;  // rounds done -> (stages in, state)
  std::mutex stop_mu_;
  int64_t furthest_round_ = -1;  // the furthest round any stage has started
  int64_t stop_at_ = -1;         // the last round to run, once a stop is requested
  int64_t stopped_after_ = -1;
  std::chrono::steady_clock::time_point run_started_;
  // Each stage's busy and waiting seconds so far, published after every action for progress
  // reports: [2 * stage] busy, [2 * stage + 1] waiting.
  std::unique_ptr<std::atomic<double>[]> live_;
  const int32_t* stop_flag_ = nullptr;
  Rendezvous rendezvous_;  // before the reducer and the engines, which wait through it
  StageReducer reducer_;
  std::vector<std::unique_ptr<StageEngine>> engines_;  // by stage
};

}  // namespace loraflow
