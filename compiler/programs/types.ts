/**
 * Stage programs: what one stage computes for one micro-batch shape, as straight-line lists of
 * ops from a closed set over tensors with static places. The compiler lowers them from the
 * model's dataflow graph (forward) and by reverse mode (backward); the engine executes them
 * through a backend's kernel table and allocates nothing else.
 *
 * Where a tensor lives:
 *   stash      the micro-batch's stash slot: written by its forward, read by its backward
 *   work       the stage's workspace: temporaries of the program running now (one at a time)
 *   act_in     the receive buffer of the micro-batch's activations (RECV act .. F)
 *   act_out    the send buffer of its activations (F .. SEND act)
 *   grad_in    the receive buffer of its output gradient (RECV grad .. B)
 *   grad_out   the send buffer of its input gradient (B .. SEND grad)
 * Offsets are in bytes from the start of that place; the round layout (RoundLayout) puts each
 * micro-batch's slot and buffers in the stage's activation arena, followed by the workspace.
 * Base weights are named by their index in the stage's weight table (weights arena); LoRA
 * weights and gradients by (part, module), resolved through the adapter arena's site table.
 */

export const PROGRAM_OPS = [
  "embed", "copy", "accumulate", "zero",
  "rmsnorm", "rmsnorm_bwd",
  "linear", "linear_dx",
  "lora_shrink", "lora_expand", "lora_bwd",
  "rope", "rope_inv",
  "attention", "attention_bwd",
  "swiglu", "swiglu_bwd",
  "add",
  "head_loss",
] as const;
export type ProgramOpName = (typeof PROGRAM_OPS)[number];

export const TENSOR_PLACES = ["stash", "work", "act_in", "act_out", "grad_in", "grad_out"] as const;
export type TensorPlace = (typeof TENSOR_PLACES)[number];

export type TensorDtype = "f32" | "bf16" | "fp16";
export const TENSOR_DTYPE_BYTES: Readonly<Record<TensorDtype, number>> = { f32: 4, bf16: 2, fp16: 2 };

export interface ProgramTensor {
  /** Readable name: "l3.q", "l3.dq", "head.dn". */
  name: string;
  place: TensorPlace;
  offset: number;
  shape: number[];
  dtype: TensorDtype;
}

/**
 * One op. `in` lists every tensor it reads (an accumulating op reads its target too), `out`
 * every tensor it writes; `scratch` tensors are its private working memory, dead before and
 * after it. LoRA ops run over the row segments of the micro-batch's parts (`parts`: indices
 * into the shape class's parts, one `u` tensor each in `in`/`out` after the fixed operands).
 */
export interface ProgramOp {
  op: ProgramOpName;
  in: number[];
  out: number[];
  scratch?: number[];
  /** Index into the stage's weight table. */
  weight?: number;
  /** Module index (TARGET_MODULES order) and layer (counted from the stage's first), for LoRA ops. */
  module?: number;
  layer?: number;
  parts?: number[];
  /** head_loss: rows of logits computed at once. attention: rows of its packed blocks. */
  chunk?: number;
}

/** A micro-batch's shape: its rows and, per part in row order, what its adapter runs. */
export interface ShapeClassPart {
  rows: number;
  rank: number;
  /** Module indices the adapter targets (TARGET_MODULES order). */
  modules: number[];
  dropout: boolean;
}

export interface ShapeClass {
  rows: number;
  parts: ShapeClassPart[];
  /**
   * The most rows a packed attention block of these rows may hold (its scores scratch is the
   * square): ATTENTION_BLOCK - 1 rows and one more example, which is at most the plan's longest
   * seq_len. From the plan, not the part, so that adapters differing only in seq_len share a class.
   */
  attentionRows: number;
}

/** A stage's forward and backward over one shape class, sharing one tensor table. */
export interface StageProgram {
  class: number;
  tensors: ProgramTensor[];
  forward: ProgramOp[];
  backward: ProgramOp[];
  /** Bytes of one micro-batch's stash slot, and of the messages in and out. */
  stashBytes: number;
  messageBytes: number;
  /** Peak workspace of the forward and of the backward (they never run at once). */
  workBytes: number;
}

export interface WeightSlot {
  name: string;
  offset: number;
  shape: number[];
  dtype: TensorDtype;
}

/** One adapter's LoRA site on a stage: A [r, in], B [out, r], dA, dB, then the optimizer's moments, from `offset` on. */
export interface AdapterSite {
  adapter: number;
  layer: number;
  module: number;
  offset: number;
}

/**
 * Where each micro-batch's slot and buffers sit in the activation arena during one round of a
 * phase: five byte offsets per micro-batch id (stash, act_in, act_out, grad_in, grad_out), -1
 * where the stage has none. `bytes` is the region's size; the workspace follows it.
 */
export interface RoundLayout {
  offsets: number[];
  bytes: number;
}

export interface StagePrograms {
  stage: number;
  /** The stage's layer blocks, [first, last). */
  blocks: [number, number];
  weights: WeightSlot[];
  weightBytes: number;
  /** The adapter arena's size; its layout is adapterLayout's (compiler/programs/layout.ts). */
  adapterBytes: number;
  /** Index into Programs.sets: the stage's program per class (stages of one shape share them). */
  set: number;
  /** Per phase. */
  rounds: RoundLayout[];
  /** The round region (the largest phase's) followed by the workspace (the largest program's). */
  roundBytes: number;
  workBytes: number;
  activationBytes: number;
  /** Micro-batches stashed at once at the peak. */
  inFlight: number;
}

export interface Programs {
  /** Storage type of activations and base weights (LoRA state is fp32). */
  dtype: TensorDtype;
  classes: ShapeClass[];
  /** Per phase, per micro-batch id: its shape class. */
  classOf: number[][];
  /** Program sets, one program per class each. */
  sets: StageProgram[][];
  stages: StagePrograms[];
}
