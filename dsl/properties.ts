import type { BlockKind } from "./ast.js";

/**
 * The kinds of value a property takes. `text` is a string or a bare word (paths, names);
 * `bytes` a size with a unit (48GB); `rate` a bandwidth (25GB/s, 100Gb/s); `intOrAuto` a
 * whole number or the word `auto`; `words` one or more bare words up to the next property.
 */
export type ArgKind = "int" | "number" | "bool" | "word" | "text" | "bytes" | "rate" | "intOrAuto";

export interface PropertySpec {
  args: ArgKind[] | "words";
  /** For a `word` argument: the words it accepts (checked here, with "did you mean"). */
  choices?: readonly string[];
  /** A nested `{ ... }` it may take, and that body's properties. */
  block?: BodySpec;
  doc: string;
}

export type BodySpec = Readonly<Record<string, PropertySpec>>;

export const DTYPES = ["bf16", "fp16", "fp32"] as const;
export const DATA_FORMATS = ["alpaca", "completion", "chat", "tokens"] as const;
export const SCHEDULES = ["gpipe", "1f1b", "batch", "mlora", "auto"] as const;
/** Hugging Face `get_scheduler` names: `constant` ignores warm-up, `constant_with_warmup` does not. */
export const LR_SCHEDULES = ["constant", "constant_with_warmup", "linear", "cosine"] as const;
export const OPTIMIZERS = ["adamw", "sgd"] as const;
export const LINKS = ["pcie", "nvlink", "shm"] as const;
export const ARCHS = ["llama"] as const;

const optimizerBody: BodySpec = {
  lr: { args: ["number"], doc: "peak learning rate" },
  weight_decay: { args: ["number"], doc: "decoupled weight decay (AdamW) or L2 (SGD)" },
  betas: { args: ["number", "number"], doc: "AdamW beta1 beta2" },
  eps: { args: ["number"], doc: "AdamW epsilon" },
  momentum: { args: ["number"], doc: "SGD momentum" },
  warmup: { args: ["int"], doc: "linear warm-up steps" },
  schedule: { args: ["word"], choices: LR_SCHEDULES, doc: "learning-rate schedule, as Hugging Face's get_scheduler: constant (warm-up ignored), constant_with_warmup, linear, cosine" },
  min_lr: { args: ["number"], doc: "the rate linear and cosine schedules decay to (default 0)" },
  clip: { args: ["number"], doc: "clip the adapter's global gradient norm to this (0: off)" },
};

/** Every block kind and its properties: the language's vocabulary lives here, not in the grammar. */
export const BLOCKS: Readonly<Record<BlockKind, BodySpec>> = {
  model: {
    from: { args: ["text"], doc: "a Hugging Face model folder (config.json, *.safetensors, tokenizer.json)" },
    tokenizer: { args: ["text"], doc: "a folder with tokenizer.json and tokenizer_config.json (default: the `from` folder)" },
    arch: { args: ["word"], choices: ARCHS, doc: "architecture family" },
    layers: { args: ["int"], doc: "decoder layers" },
    hidden: { args: ["int"], doc: "hidden size" },
    heads: { args: ["int"], doc: "attention heads" },
    kv_heads: { args: ["int"], doc: "key/value heads (GQA); default: heads" },
    ffn: { args: ["int"], doc: "MLP intermediate size" },
    vocab: { args: ["int"], doc: "vocabulary size" },
    head_dim: { args: ["int"], doc: "per-head size; default hidden / heads" },
    rope_theta: { args: ["number"], doc: "RoPE base" },
    norm_eps: { args: ["number"], doc: "RMSNorm epsilon" },
    tie_embeddings: { args: ["bool"], doc: "the head shares the embedding matrix" },
    max_seq: { args: ["int"], doc: "longest sequence the model takes" },
    dtype: { args: ["word"], choices: DTYPES, doc: "base weight dtype in memory" },
    seed: { args: ["int"], doc: "seed of the random weights of a model declared inline" },
  },
  adapter: {
    rank: { args: ["int"], doc: "LoRA rank r" },
    alpha: { args: ["number"], doc: "LoRA alpha; scaling alpha/r (alpha/sqrt(r) with rslora)" },
    dropout: { args: ["number"], doc: "LoRA dropout probability" },
    rslora: { args: ["bool"], doc: "rank-stabilised scaling" },
    targets: { args: "words", doc: "modules to adapt: q_proj k_proj v_proj o_proj gate_proj up_proj down_proj, or all | attention | mlp" },
    data: { args: ["text"], doc: "a JSONL training file" },
    format: { args: ["word"], choices: DATA_FORMATS, doc: "data line format" },
    seq_len: { args: ["int"], doc: "tokens per sequence" },
    eval_split: { args: ["number"], doc: "the fraction of examples held out for evaluation (default 0)" },
    eval_every: { args: ["int"], doc: "evaluate the held-out examples every this many steps (default: at the end only)" },
    skip_bad_lines: { args: ["bool"], doc: "skip and count bad data lines instead of refusing the file" },
    pack: { args: ["bool"], doc: "pack consecutive examples into each sequence (default: one example per sequence, padded)" },
    batch: { args: ["int"], doc: "sequences per optimizer step" },
    micro_batch: { args: ["int"], doc: "sequences per micro-batch" },
    epochs: { args: ["int"], doc: "passes over the data" },
    steps: { args: ["int"], doc: "optimizer steps (instead of epochs)" },
    optimizer: { args: ["word"], choices: OPTIMIZERS, block: optimizerBody, doc: "optimizer and its settings" },
    init: { args: ["text"], doc: "a PEFT adapter folder to start from" },
    out: { args: ["text"], doc: "where the trained adapter is written" },
    seed: { args: ["int"], doc: "seed for initialisation, dropout and data order" },
    save_every: { args: ["int"], doc: "save a checkpoint every this many steps (0: at the end only)" },
    fuse: { args: ["text"], doc: "adapters with the same fuse name share every micro-batch and step together (mlora, auto)" },
  },
  cluster: {
    gpu: { args: ["text"], doc: "device profile: A6000 RTX3090 A100-40G A100-80G H100 H200 cpu, or a new name" },
    gpus: { args: ["int"], doc: "devices per node" },
    nodes: { args: ["int"], doc: "machines" },
    memory: { args: ["bytes"], doc: "memory per device" },
    tflops: { args: ["number"], doc: "dense bf16 TFLOP/s per device" },
    bandwidth: { args: ["rate"], doc: "device memory bandwidth" },
    link: { args: ["word", "rate"], choices: LINKS, doc: "link between devices of a node" },
    net: { args: ["rate"], doc: "network between nodes" },
  },
  plan: {
    schedule: { args: ["word"], choices: SCHEDULES, doc: "pipeline schedule" },
    stages: { args: ["intOrAuto"], doc: "pipeline stages" },
    recompute: { args: ["bool"], doc: "recompute activations in backward instead of stashing them" },
  },
};

export const BLOCK_KINDS = Object.keys(BLOCKS) as BlockKind[];

export function isBlockKind(word: string): word is BlockKind {
  return Object.hasOwn(BLOCKS, word);
}
