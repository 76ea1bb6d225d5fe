import { permutation, randomFor } from "../random.js";
import type { Example } from "./examples.js";

/**
 * Training sequences of exactly seq_len rows, as the engine reads them (all [N, L], row-major).
 * targets[t] is the label of token t + 1 of the same example (Hugging Face's causal-LM shift),
 * -100 at an example's last token and on padding; segStart is where the token's example starts
 * within the sequence; positions restart at every example. A packed example therefore computes
 * exactly what it would alone.
 */
export interface Sequences {
  count: number;
  seqLen: number;
  tokens: Int32Array;
  targets: Int32Array;
  segStart: Int32Array;
  pos: Int32Array;
  /** Examples cut short to fit seq_len. */
  truncated: number;
}

const PAD = 0;

/**
 * `pack` false: one example per sequence, padded. `pack` true: consecutive examples share a
 * sequence while they fit. An example longer than seq_len keeps its first seq_len tokens.
 */
export function buildSequences(examples: Example[], seqLen: number, pack: boolean): Sequences {
  const groups: Example[][] = [];
  let truncated = 0;
  let current: Example[] = [];
  let used = 0;
  for (const raw of examples) {
    const e = raw.inputIds.length > seqLen ? { inputIds: raw.inputIds.slice(0, seqLen), labels: raw.labels.slice(0, seqLen) } : raw;
    if (e !== raw) truncated++;
    if (!pack || used + e.inputIds.length > seqLen) {
      if (current.length > 0) groups.push(current);
      current = [];
      used = 0;
    }
    current.push(e);
    used += e.inputIds.length;
  }
  if (current.length > 0) groups.push(current);

  const n = groups.length * seqLen;
  const s: Sequences = {
    count: groups.length,
    seqLen,
    tokens: new Int32Array(n).fill(PAD),
    targets: new Int32Array(n).fill(-100),
    segStart: new Int32Array(n),
    pos: new Int32Array(n),
    truncated,
  };
  groups.forEach((group, g) => {
    let row = 0;
    for (const e of group) {
      const start = row;
      for (let i = 0; i < e.inputIds.length; i++, row++) {
        const at = g * seqLen + row;
        s.tokens[at] = e.inputIds[i]!;
        s.targets[at] = i + 1 < e.labels.length ? e.labels[i + 1]! : -100;
        s.segStart[at] = start;
        s.pos[at] = i;
      }
    }
    // Padding: each pad row is its own example, so it attends only to itself.
    for (; row < seqLen; row++) {
      s.segStart[g * seqLen + row] = row;
      s.pos[g * seqLen + row] = 0;
    }
  });
  return s;
}

/**
 * Which sequences each step trains on: epochs of seeded shuffles, laid end to end and cut into
 * steps of `batch`. Also the counted tokens of every step, the denominator of its mean loss.
 */
export function stepOrder(s: Sequences, steps: number, batch: number, seed: number): { order: Int32Array; stepTokens: Float64Array } {
  const order = new Int32Array(steps * batch);
  let filled = 0;
  for (let epoch = 0; filled < order.length; epoch++) {
    const perm = permutation(s.count, randomFor(seed, 0xda7a, epoch));
    for (let i = 0; i < perm.length && filled < order.length; i++) order[filled++] = perm[i]!;
  }
  const stepTokens = new Float64Array(steps);
  for (let k = 0; k < steps; k++) {
    let counted = 0;
    for (let b = 0; b < batch; b++) {
      const seq = order[k * batch + b]!;
      for (let t = 0; t < s.seqLen; t++) if (s.targets[seq * s.seqLen + t]! >= 0) counted++;
    }
    stepTokens[k] = counted;
  }
  return { order, stepTokens };
}
