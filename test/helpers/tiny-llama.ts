import { randomArray, rng } from "./random.js";

export interface TinyArch {
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
  /** Hugging Face's rope_scaling (linear or llama3), when the model has one. */
  ropeScaling?: { rope_type: "linear" | "llama3"; factor: number; low_freq_factor?: number; high_freq_factor?: number; original_max_position_embeddings?: number };
}

export const MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"] as const;
export type ModuleName = (typeof MODULES)[number];

export function moduleShape(a: TinyArch, m: ModuleName): { in: number; out: number } {
  const q = a.heads * a.headDim;
  const kv = a.kvHeads * a.headDim;
  switch (m) {
    case "q_proj":
      return { in: a.hidden, out: q };
    case "k_proj":
    case "v_proj":
      return { in: a.hidden, out: kv };
    case "o_proj":
      return { in: q, out: a.hidden };
    case "gate_proj":
    case "up_proj":
      return { in: a.hidden, out: a.ffn };
    case "down_proj":
      return { in: a.ffn, out: a.hidden };
  }
}

const parent = (m: ModuleName) => (["gate_proj", "up_proj", "down_proj"].includes(m) ? "mlp" : "self_attn");

/** Every base weight's Hugging Face name and shape. */
export function weightShapes(a: TinyArch): Record<string, number[]> {
  const shapes: Record<string, number[]> = { "model.embed_tokens.weight": [a.vocab, a.hidden] };
  for (let l = 0; l < a.layers; l++) {
    const p = `model.layers.${l}.`;
    shapes[p + "input_layernorm.weight"] = [a.hidden];
    shapes[p + "post_attention_layernorm.weight"] = [a.hidden];
    for (const m of MODULES) {
      const { in: i, out: o } = moduleShape(a, m);
      shapes[`${p}${parent(m)}.${m}.weight`] = [o, i];
    }
  }
  shapes["model.norm.weight"] = [a.hidden];
  if (!a.tieEmbeddings) shapes["lm_head.weight"] = [a.vocab, a.hidden];
  return shapes;
}

/** Random base weights under Hugging Face names; norms near 1 so activations stay tame. */
export function randomWeights(a: TinyArch, seed: number): Record<string, Float64Array> {
  const next = rng(seed);
  const w: Record<string, Float64Array> = {};
  const norm = () => Float64Array.from({ length: a.hidden }, () => 1 + 0.2 * (2 * next() - 1));
  w["model.embed_tokens.weight"] = randomArray(next, a.vocab * a.hidden);
  for (let l = 0; l < a.layers; l++) {
    const p = `model.layers.${l}.`;
    w[p + "input_layernorm.weight"] = norm();
    w[p + "post_attention_layernorm.weight"] = norm();
    for (const m of MODULES) {
      const { in: i, out: o } = moduleShape(a, m);
      w[`${p}${parent(m)}.${m}.weight`] = randomArray(next, i * o, 1 / Math.sqrt(i));
    }
  }
  w["model.norm.weight"] = norm();
  if (!a.tieEmbeddings) w["lm_head.weight"] = randomArray(next, a.vocab * a.hidden, 1 / Math.sqrt(a.hidden));
  return w;
}

export interface TestAdapter {
  rank: number;
  scale: number;
  dropout: number;
  sites: Record<string, { A: Float64Array; B: Float64Array }>;
}

/** An adapter on the given modules of every layer, with A and B both random (B = 0 hides dA). */
export function randomAdapter(a: TinyArch, seed: number, rank: number, scale: number, dropout: number, targets: readonly ModuleName[]): TestAdapter {
  const next = rng(seed);
  const sites: TestAdapter["sites"] = {};
  for (let l = 0; l < a.layers; l++) {
    for (const m of targets) {
      const { in: i, out: o } = moduleShape(a, m);
      sites[`${l}.${m}`] = { A: randomArray(next, rank * i, 0.5), B: randomArray(next, o * rank, 0.5) };
    }
  }
  return { rank, scale, dropout, sites };
}

export interface TestSequence {
  adapter: number;
  /** Packed examples, each a list of token ids; the sequence is their concatenation. */
  examples: number[][];
  /** Per token, whether its next-token label counts. */
  seed: number;
}

export interface TestMicroBatch {
  tokens: Int32Array;
  targets: Int32Array;
  segStart: Int32Array;
  pos: Int32Array;
  rowKeys: BigUint64Array;
  parts: { adapter: number; row0: number; rows: number; gradScale: number }[];
}

/**
 * Rows for sequences grouped by adapter (in the order given): targets are the next token within
 * the same example (-100 at each example's end), positions and attention restart per example.
 * `gradScale` is 1 / counted tokens of each adapter over `stepSequences` (all micro-batches of
 * its step), so summed losses are the step's mean.
 */
export function microBatch(sequences: TestSequence[], stepSequences: TestSequence[]): TestMicroBatch {
  const counted = new Map<number, number>();
  for (const s of stepSequences) {
    const n = s.examples.reduce((sum, e) => sum + e.length - 1, 0);
    counted.set(s.adapter, (counted.get(s.adapter) ?? 0) + n);
  }
  const tokens: number[] = [];
  const targets: number[] = [];
  const segStart: number[] = [];
  const pos: number[] = [];
  const rowKeys: bigint[] = [];
  const parts: TestMicroBatch["parts"] = [];
  for (const s of sequences) {
    const last = parts[parts.length - 1];
    if (last && last.adapter === s.adapter) last.rows += s.examples.flat().length;
    else parts.push({ adapter: s.adapter, row0: tokens.length, rows: s.examples.flat().length, gradScale: 1 / counted.get(s.adapter)! });
    let position = 0;
    for (const e of s.examples) {
      const start = tokens.length;
      e.forEach((tok, i) => {
        tokens.push(tok);
        targets.push(i + 1 < e.length ? e[i + 1]! : -100);
        segStart.push(start);
        pos.push(i);
        rowKeys.push(BigInt(s.seed) * 65537n + BigInt(position++));
      });
    }
  }
  return {
    tokens: Int32Array.from(tokens),
    targets: Int32Array.from(targets),
    segStart: Int32Array.from(segStart),
    pos: Int32Array.from(pos),
    rowKeys: BigUint64Array.from(rowKeys),
    parts,
  };
}
