import { z } from "zod";
import { ARCH_LIMITS } from "../models/llama.js";
import { ProgramsSchema } from "../programs/schema.js";
import { planPathProblem } from "./paths.js";

export const PLAN_FORMAT = "loraflow.plan/3";
export const SUMMARY_FORMAT = "loraflow.summary/1";

/** Counts are bounded like the job language bounds them: no plan asks for unbounded work. */
const count = z.number().int().nonnegative().max(2 ** 31);
const positive = z.number().int().positive().max(2 ** 31);
const bounded = (max: number) => z.number().int().positive().max(max);
const finite = z.number().refine(Number.isFinite, "must be a finite number");
/** Paths in a plan are relative to the plan's folder, with forward slashes, and stay inside it. */
const relPath = z.string().superRefine((p, ctx) => {
  const problem = planPathProblem(p);
  if (problem) ctx.addIssue({ code: "custom", message: `${JSON.stringify(p.slice(0, 64))} ${problem}` });
});

export const LlamaConfigSchema = z.object({
  layers: bounded(ARCH_LIMITS.layers),
  hidden: bounded(ARCH_LIMITS.hidden),
  heads: bounded(ARCH_LIMITS.heads),
  kvHeads: bounded(ARCH_LIMITS.kvHeads),
  headDim: bounded(ARCH_LIMITS.headDim),
  ffn: bounded(ARCH_LIMITS.ffn),
  vocab: bounded(ARCH_LIMITS.vocab),
  ropeTheta: finite.refine((x) => x > 0, "must be positive"),
  normEps: finite.refine((x) => x > 0, "must be positive"),
  tieEmbeddings: z.boolean(),
  maxSeq: bounded(ARCH_LIMITS.maxSeq),
  ropeScaling: z.record(z.string(), z.unknown()).nullable(),
});

export const OptimizerSchema = z.object({
  kind: z.enum(["adamw", "sgd"]),
  lr: finite,
  weightDecay: finite,
  betas: z.tuple([finite, finite]),
  eps: finite,
  momentum: finite,
  warmup: count,
  schedule: z.enum(["constant", "constant_with_warmup", "linear", "cosine"]),
  minLr: finite,
  clip: finite,
});

export const AdapterSchema = z.object({
  name: z.string().min(1),
  rank: bounded(1 << 16),
  alpha: finite,
  scaling: finite.describe("alpha / rank, or alpha / sqrt(rank) with rsLoRA"),
  dropout: finite.refine((x) => x >= 0 && x < 1, "must be in [0, 1)"),
  rslora: z.boolean(),
  targets: z.array(z.enum(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])).min(1),
  data: z.object({
    path: relPath.nullable().describe("the JSONL file, relative to the plan's folder; null: planned without data, which run refuses"),
    format: z.enum(["alpaca", "completion", "chat", "tokens"]),
    examples: count,
    evalSplit: finite.refine((x) => x >= 0 && x < 1, "must be in [0, 1)").describe("fraction of examples held out for evaluation"),
    evalEvery: count.describe("evaluate the held-out examples every this many steps (0: at the end only)"),
    skipBadLines: z.boolean(),
  }),
  seqLen: bounded(ARCH_LIMITS.maxSeq),
  pack: z.boolean(),
  batch: bounded(1 << 16),
  microBatch: bounded(1 << 16),
  microBatchesPerStep: positive.describe("batch / microBatch: micro-batches per optimizer step"),
  steps: positive.describe("optimizer steps the adapter trains for"),
  optimizer: OptimizerSchema,
  init: relPath.nullable().describe("a PEFT adapter folder to start from, relative to the plan's folder"),
  out: relPath.describe("where the trained adapter is written, relative to the plan's folder"),
  seed: z.number().int().nonnegative().max(2 ** 32 - 1),
  saveEvery: count,
});

export const StageSchema = z.object({
  index: count,
  device: count,
  node: count,
  blocks: z.tuple([count, count]).describe("[first, last) over layer blocks: block b is layer floor(b/2), its attention half when b is even"),
  layers: z.tuple([count, count]).describe("[first, last) of the layers any of whose blocks the stage runs"),
  embedding: z.boolean(),
  head: z.boolean(),
});

export const PhaseSchema = z.object({
  rounds: positive.describe("identical rounds the phase repeats"),
  stepsPerRound: positive.describe("optimizer steps every adapter of the phase takes in one round"),
  adapters: z.array(count).min(1).describe("indices of the adapters still training in this phase"),
  microBatches: z.array(
    z.object({
      id: count,
      parts: z.array(z.object({ adapter: count, step: count, index: count, sequences: positive })).min(1),
    }),
  ),
  actions: z.array(z.array(z.string())).describe('per stage, one round\'s actions in order: "F mb3", "B mb3", "SEND act mb3 to s1", "RECV grad mb3 from s2", "STEP a2"'),
});

export const PlanSchema = z.object({
  format: z.literal(PLAN_FORMAT),
  compiler: z.object({ name: z.literal("loraflow"), version: z.string() }),
  source: z.object({ job: relPath.nullable().describe("the job file's name (informational; never read)"), sha256: z.string().regex(/^[0-9a-f]{64}$/) }),
  model: z.object({
    name: z.string(),
    arch: z.literal("llama"),
    config: LlamaConfigSchema,
    dtype: z.enum(["bf16", "fp16", "fp32"]),
    parameters: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
    seed: z.number().int().nonnegative().max(2 ** 32 - 1),
    folder: relPath.nullable(),
    tokenizer: relPath.nullable().describe("the folder holding tokenizer.json (text data formats)"),
    weights: z
      .object({ format: z.literal("safetensors"), index: relPath.nullable(), files: z.array(relPath).min(1), dtypes: z.array(z.string()) })
      .nullable(),
  }),
  adapters: z.array(AdapterSchema).min(1),
  cluster: z.object({
    name: z.string(),
    device: z.object({
      name: z.string(),
      memoryBytes: finite,
      tflops: finite,
      bandwidthBytesPerSecond: finite,
      link: z.object({ kind: z.enum(["pcie", "nvlink", "shm"]), bytesPerSecond: finite }),
    }),
    gpusPerNode: positive,
    nodes: positive,
    netBytesPerSecond: finite,
  }),
  recompute: z.boolean(),
  stages: z.array(StageSchema).min(1).max(4096),
  schedule: z.object({
    name: z.enum(["gpipe", "1f1b", "batch", "mlora"]),
    groups: z
      .array(z.array(count).min(1))
      .optional()
      .describe("fused adapter groups in stream order (mlora only; absent: every adapter alone, in index order)"),
    phases: z.array(PhaseSchema).min(1),
  }),
  programs: ProgramsSchema.describe("each stage's compiled programs per micro-batch shape, and its arenas (compiler/programs)"),
});

export type Plan = z.infer<typeof PlanSchema>;
export type PlanAdapter = Plan["adapters"][number];
export type PlanStage = Plan["stages"][number];

export const SummarySchema = z.object({
  format: z.literal(SUMMARY_FORMAT),
  schedule: z.string(),
  stages: z.array(
    z.object({
      index: count,
      device: count,
      layers: z.tuple([count, count]),
      embedding: z.boolean(),
      head: z.boolean(),
      memoryBytes: finite,
      memoryCapacityBytes: finite,
      busySeconds: finite,
    }),
  ),
  adapters: z.array(z.object({ name: z.string(), steps: count, microBatchesPerStep: positive })),
  makespanSeconds: finite,
  lowerBoundSeconds: finite,
  /** 1 - mean / max of the stages' busy times. */
  imbalance: finite,
  idleFraction: finite,
  /** Tokens every adapter trains on, over the makespan. */
  tokensPerSecond: finite,
  compileMillis: finite,
  /** Fused adapter groups of the chosen schedule, by name, in stream order. */
  groups: z.array(z.array(z.string())).optional(),
  /** Every schedule weighed (with `auto` or `--compare`); makespan absent when not simulated. */
  comparison: z
    .array(
      z.object({
        label: z.string(),
        makespanSeconds: finite.nullable(),
        idleFraction: finite.nullable(),
        peakBytes: finite,
        fits: z.boolean(),
        chosen: z.boolean(),
        pruned: z.boolean(),
      }),
    )
    .optional(),
});

export type Summary = z.infer<typeof SummarySchema>;
