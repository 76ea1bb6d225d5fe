import { excerpt } from "../../dsl/text.js";
import type { Dtype, LlamaArch } from "../job.js";

/**
 * Everything model-specific about Llama lives here: config.json fields, weight names and
 * shapes, the modules LoRA can target, and the dataflow graph. Another family gets its own file.
 */

export const TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"] as const;
export type TargetModuleName = (typeof TARGET_MODULES)[number];
export const TARGET_GROUPS: Readonly<Record<string, readonly TargetModuleName[]>> = {
  all: TARGET_MODULES,
  attention: ["q_proj", "k_proj", "v_proj", "o_proj"],
  mlp: ["gate_proj", "up_proj", "down_proj"],
};

/** The submodule each target sits in: the PEFT key is `model.layers.{i}.{parent}.{name}`. */
export const MODULE_PARENT: Readonly<Record<TargetModuleName, "self_attn" | "mlp">> = {
  q_proj: "self_attn",
  k_proj: "self_attn",
  v_proj: "self_attn",
  o_proj: "self_attn",
  gate_proj: "mlp",
  up_proj: "mlp",
  down_proj: "mlp",
};

export interface TargetModule {
  name: TargetModuleName;
  /** "self_attn" or "mlp": the PEFT key is `model.layers.{i}.{parent}.{name}`. */
  parent: "self_attn" | "mlp";
  in: number;
  out: number;
}

/** Every module LoRA can target, in TARGET_MODULES order, with its [in -> out] shape. */
export function targetModules(arch: LlamaArch): TargetModule[] {
  const q = arch.heads * arch.headDim;
  const kv = arch.kvHeads * arch.headDim;
  const shapes: Record<TargetModuleName, [number, number]> = {
    q_proj: [arch.hidden, q],
    k_proj: [arch.hidden, kv],
    v_proj: [arch.hidden, kv],
    o_proj: [q, arch.hidden],
    gate_proj: [arch.hidden, arch.ffn],
    up_proj: [arch.hidden, arch.ffn],
    down_proj: [arch.ffn, arch.hidden],
  };
  return TARGET_MODULES.map((name) => ({ name, parent: MODULE_PARENT[name], in: shapes[name][0], out: shapes[name][1] }));
}

/** Base weights by Hugging Face name, with their `[out, in]` (or `[n]`) shapes. */
export function weightShapes(arch: LlamaArch): Map<string, number[]> {
  const shapes = new Map<string, number[]>();
  shapes.set("model.embed_tokens.weight", [arch.vocab, arch.hidden]);
  for (let i = 0; i < arch.layers; i++) {
    const prefix = `model.layers.${i}`;
    shapes.set(`${prefix}.input_layernorm.weight`, [arch.hidden]);
    shapes.set(`${prefix}.post_attention_layernorm.weight`, [arch.hidden]);
    for (const m of targetModules(arch)) shapes.set(`${prefix}.${m.parent}.${m.name}.weight`, [m.out, m.in]);
  }
  shapes.set("model.norm.weight", [arch.hidden]);
  if (!arch.tieEmbeddings) shapes.set("lm_head.weight", [arch.vocab, arch.hidden]);
  return shapes;
}

/** The PEFT key of a LoRA tensor: `base_model.model.model.layers.{i}.{parent}.{module}.lora_{A|B}.weight`. */
export function peftKey(layer: number, module: TargetModuleName, which: "A" | "B"): string {
  return `base_model.model.model.layers.${layer}.${MODULE_PARENT[module]}.${module}.lora_${which}.weight`;
}

/** Every LoRA tensor of an adapter by PEFT key: A [r, in], B [out, r], for each layer and target. */
export function loraShapes(arch: LlamaArch, targets: readonly TargetModuleName[], rank: number): Map<string, { layer: number; module: TargetModuleName; which: "A" | "B"; shape: [number, number] }> {
  const modules = new Map(targetModules(arch).map((m) => [m.name, m]));
  const out = new Map<string, { layer: number; module: TargetModuleName; which: "A" | "B"; shape: [number, number] }>();
  for (let layer = 0; layer < arch.layers; layer++) {
    for (const module of targets) {
      const m = modules.get(module)!;
      out.set(peftKey(layer, module, "A"), { layer, module, which: "A", shape: [rank, m.in] });
      out.set(peftKey(layer, module, "B"), { layer, module, which: "B", shape: [m.out, rank] });
    }
  }
  return out;
}

/**
 * What is wrong with the LoRA tensors of a PEFT file (by key, with shapes) for an adapter of
 * these targets and rank: a tensor missing or misshapen (a transposed lora_A says so), or LoRA
 * tensors of modules it does not train. PEFT also saves keys with `.default` before `.weight`.
 */
export function loraTensorProblems(expected: ReturnType<typeof loraShapes>, stored: Map<string, { shape: number[] }>): string[] {
  const problems: string[] = [];
  const canonical = (key: string) => key.replace(/\.default\.weight$/, ".weight");
  const byKey = new Map([...stored].map(([k, v]) => [canonical(k), v]));
  for (const [key, want] of expected) {
    const got = byKey.get(key);
    if (!got) problems.push(`\`${key}\` is missing`);
    else if (got.shape.length !== 2 || got.shape[0] !== want.shape[0] || got.shape[1] !== want.shape[1]) {
      const transposed = got.shape.length === 2 && got.shape[0] === want.shape[1] && got.shape[1] === want.shape[0];
      problems.push(`\`${key}\` is [${got.shape.join(", ")}], expected [${want.shape.join(", ")}]${transposed ? " (transposed)" : ""}`);
    }
  }
  for (const key of byKey.keys()) {
    if (/\.lora_[AB]\.weight$/.test(key) && !expected.has(key)) problems.push(`\`${key}\` is a LoRA tensor of a module or layer this adapter does not train`);
  }
  return problems;
}

export function parameterCount(arch: LlamaArch): number {
  let n = 0;
  for (const shape of weightShapes(arch).values()) n += shape.reduce((a, b) => a * b, 1);
  return n;
}

/**
 * Upper bounds on architecture sizes, the same in the job language, config.json and plan files:
 * they keep planning and allocation bounded whatever a file says; real models are far below.
 */
export const ARCH_LIMITS: Readonly<Record<"layers" | "hidden" | "heads" | "kvHeads" | "headDim" | "ffn" | "vocab" | "maxSeq", number>> = {
  layers: 1024,
  hidden: 1 << 20,
  heads: 4096,
  kvHeads: 4096,
  headDim: 1 << 16,
  ffn: 1 << 22,
  vocab: 1 << 24,
  maxSeq: 1 << 24,
};

/** The fields each RoPE scaling the engine implements needs, as Hugging Face names them. */
const ROPE_SCALING_FIELDS: Readonly<Record<string, readonly string[]>> = {
  linear: ["factor"],
  llama3: ["factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"],
};

/**
 * A config.json's (or plan's) `rope_scaling`: "default" is none (null); "linear" and "llama3"
 * (Llama 3.1 and later) come back with their fields checked, as the engine reads them; any
 * other kind is not implemented, and training as if it were absent would learn for another
 * model, so it is refused.
 */
export function ropeScalingCheck(scaling: Record<string, unknown>): { scaling: Record<string, unknown> | null; problem?: string; unsupported?: string } {
  const type = scaling["rope_type"] ?? scaling["type"];
  if (type === "default") return { scaling: null };
  const fields = typeof type === "string" ? ROPE_SCALING_FIELDS[type] : undefined;
  if (!fields) return { scaling: null, unsupported: `rope_scaling ${excerpt(JSON.stringify(type ?? null), 24)} (loraflow implements linear and llama3)` };
  const out: Record<string, unknown> = { rope_type: type };
  for (const f of fields) {
    const v = scaling[f];
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) return { scaling: null, problem: `of type ${type} needs \`${f}\`, a positive number` };
    out[f] = v;
  }
  if (type === "llama3" && !((out["high_freq_factor"] as number) > (out["low_freq_factor"] as number))) {
    return { scaling: null, problem: "of type llama3 needs high_freq_factor above low_freq_factor" };
  }
  return { scaling: out };
}

/** Hugging Face LlamaConfig's defaults for the fields a config.json may leave out. */
export const LLAMA_DEFAULTS = { ropeTheta: 10000, normEps: 1e-6, tieEmbeddings: false, maxSeq: 2048 } as const;

/** The problems that make an architecture impossible; empty when it is sound. */
export function archProblems(arch: LlamaArch): { field: keyof LlamaArch; grouping: boolean; message: string }[] {
  const problems: { field: keyof LlamaArch; grouping: boolean; message: string }[] = [];
  if (arch.kvHeads > arch.heads || arch.heads % arch.kvHeads !== 0) {
    problems.push({ field: "kvHeads", grouping: true, message: `heads ${arch.heads} is not divisible by kv_heads ${arch.kvHeads}` });
  }
  if (arch.headDim % 2 !== 0) {
    problems.push({ field: "headDim", grouping: false, message: `head_dim ${arch.headDim} is odd; RoPE rotates pairs of its halves` });
  }
  return problems;
}

const CONFIG_FIELDS: Record<string, keyof LlamaArch> = {
  num_hidden_layers: "layers",
  hidden_size: "hidden",
  num_attention_heads: "heads",
  num_key_value_heads: "kvHeads",
  head_dim: "headDim",
  intermediate_size: "ffn",
  vocab_size: "vocab",
  rope_theta: "ropeTheta",
  rms_norm_eps: "normEps",
  tie_word_embeddings: "tieEmbeddings",
  max_position_embeddings: "maxSeq",
};

/** The job's name for each architecture field, for messages. */
export const JOB_KEYS: Record<keyof LlamaArch, string> = {
  layers: "layers",
  hidden: "hidden",
  heads: "heads",
  kvHeads: "kv_heads",
  headDim: "head_dim",
  ffn: "ffn",
  vocab: "vocab",
  ropeTheta: "rope_theta",
  normEps: "norm_eps",
  tieEmbeddings: "tie_embeddings",
  maxSeq: "max_seq",
  ropeScaling: "rope_scaling",
};

export interface ConfigReading {
  arch: Partial<LlamaArch>;
  dtype?: Dtype;
  problems: string[];
  unsupported: string[];
}

/** Reads a parsed config.json. Never throws: what is wrong comes back as messages. */
export function readLlamaConfig(config: unknown): ConfigReading {
  const reading: ConfigReading = { arch: {}, problems: [], unsupported: [] };
  if (typeof config !== "object" || config === null || Array.isArray(config)) {
    reading.problems.push("is not a JSON object");
    return reading;
  }
  const c = config as Record<string, unknown>;
  if (c["model_type"] !== "llama") {
    reading.unsupported.push(`model_type ${JSON.stringify(c["model_type"] ?? null)} (loraflow implements "llama")`);
  }
  for (const [field, key] of Object.entries(CONFIG_FIELDS)) {
    const value = c[field];
    if (value === undefined || value === null) continue;
    if (key === "tieEmbeddings") {
      if (typeof value === "boolean") reading.arch.tieEmbeddings = value;
      else reading.problems.push(`\`${field}\` is ${JSON.stringify(value)}, not true or false`);
      continue;
    }
    const integer = key !== "ropeTheta" && key !== "normEps";
    if (typeof value !== "number" || !Number.isFinite(value) || value <= 0 || (integer && !Number.isSafeInteger(value))) {
      reading.problems.push(`\`${field}\` is ${JSON.stringify(value)}, not a positive ${integer ? "whole number" : "number"}`);
      continue;
    }
    const limit = (ARCH_LIMITS as Record<string, number>)[key];
    if (limit !== undefined && value > limit) {
      reading.problems.push(`\`${field}\` is ${value}, above the ${limit} loraflow takes`);
      continue;
    }
    (reading.arch as Record<string, number>)[key] = value;
  }
  for (const field of ["num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size", "vocab_size"]) {
    if (c[field] === undefined) reading.problems.push(`\`${field}\` is missing`);
  }
  const scaling = c["rope_scaling"];
  if (scaling !== undefined && scaling !== null) {
    if (typeof scaling !== "object" || Array.isArray(scaling)) reading.problems.push("`rope_scaling` is not an object");
    else {
      const check = ropeScalingCheck(scaling as Record<string, unknown>);
      if (check.unsupported) reading.unsupported.push(check.unsupported);
      else if (check.problem) reading.problems.push(`\`rope_scaling\` ${check.problem}`);
      else reading.arch.ropeScaling = check.scaling;
    }
  }
  const act = c["hidden_act"];
  if (act !== undefined && act !== "silu") reading.unsupported.push(`hidden_act ${JSON.stringify(act)} (Llama uses "silu")`);
  for (const bias of ["attention_bias", "mlp_bias"]) {
    if (c[bias] === true) reading.unsupported.push(`${bias} true (Llama's projections have no bias)`);
  }
  const dtype = c["torch_dtype"] ?? c["dtype"];
  const dtypes: Record<string, Dtype> = { bfloat16: "bf16", float16: "fp16", float32: "fp32" };
  if (typeof dtype === "string" && dtypes[dtype]) reading.dtype = dtypes[dtype];
  return reading;
}
