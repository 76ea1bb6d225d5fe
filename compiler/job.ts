import type { Span } from "../dsl/index.js";
import type { DeviceProfile } from "./devices.js";

/** Where each property of a block was written, for diagnostics that point at it. */
export type Spans = Readonly<Record<string, Span>>;

export type Dtype = "bf16" | "fp16" | "fp32";
export type DataFormat = "alpaca" | "completion" | "chat" | "tokens";
export type ScheduleName = "gpipe" | "1f1b" | "batch" | "mlora" | "auto";
export type LrSchedule = "constant" | "constant_with_warmup" | "linear" | "cosine";

/** The architecture of a Llama-family model, in Hugging Face LlamaConfig's terms. */
export interface LlamaArch {
  layers: number;
  hidden: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  ffn: number;
  vocab: number;
  ropeTheta: number;
  normEps: number;
  tieEmbeddings: boolean;
  maxSeq: number;
  /** config.json's `rope_scaling` as written (Llama 3.1's "llama3" type), or null. */
  ropeScaling: Record<string, unknown> | null;
}

export interface ModelSpec {
  name: string;
  span: Span;
  spans: Spans;
  /** Absolute path of the `from` folder. */
  from?: string;
  /** Absolute path of the tokenizer's folder, when given apart from `from`. */
  tokenizer?: string;
  /** Architecture values written in the job itself. */
  inline: Partial<LlamaArch>;
  dtype?: Dtype;
  /** Seed of the random weights of an inline model. */
  seed: number;
}

export interface OptimizerSpec {
  kind: "adamw" | "sgd";
  lr: number;
  weightDecay: number;
  betas: [number, number];
  eps: number;
  momentum: number;
  warmup: number;
  schedule: LrSchedule;
  minLr: number;
  /** Global-norm clipping threshold; 0 turns it off. */
  clip: number;
}

export interface AdapterSpec {
  name: string;
  index: number;
  span: Span;
  spans: Spans;
  rank: number;
  alpha: number;
  dropout: number;
  rslora: boolean;
  /** As written: module names or the groups all | attention | mlp. */
  targets: { name: string; span: Span }[];
  /** Absolute path; absent when the job forgot it (already reported). */
  data?: string;
  format: DataFormat;
  /** Fraction of examples held out for evaluation, and how often (in steps; 0: at the end). */
  evalSplit: number;
  evalEvery: number;
  skipBadLines: boolean;
  seqLen: number;
  /** Pack consecutive examples into each sequence (else one example per sequence, padded). */
  pack: boolean;
  batch: number;
  microBatch: number;
  length: { epochs: number } | { steps: number };
  optimizer: OptimizerSpec;
  /** Absolute path of a PEFT adapter folder to start from. */
  init?: string;
  /** Absolute path of the folder the trained adapter goes to. */
  out: string;
  seed: number;
  saveEvery: number;
  /** Adapters with the same name share micro-batches under `mlora` (and `auto` keeps the grouping). */
  fuse?: string;
}

export interface ClusterSpec {
  name: string;
  span: Span;
  spans: Spans;
  device: DeviceProfile;
  gpusPerNode: number;
  nodes: number;
  netBytesPerSecond: number;
}

export interface PlanSpec {
  span?: Span;
  spans: Spans;
  schedule: ScheduleName;
  stages: number | "auto";
  recompute: boolean;
}

export interface Job {
  model: ModelSpec;
  adapters: AdapterSpec[];
  cluster: ClusterSpec;
  plan: PlanSpec;
}
