import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readDataset } from "../../runtime/data/dataset.js";
import { buildSequences, type Sequences } from "../../runtime/data/sequences.js";
import { loadTokenizer, type TextTokenizer } from "../../runtime/data/tokenizer.js";
import { loadNative } from "../../runtime/native.js";
import { tempDir } from "../helpers/hf-model.js";
import { randomAdapter, randomWeights, type TinyArch } from "../helpers/tiny-llama.js";
import { writeSmallTokenizer } from "../helpers/tokenizers.js";

const native = loadNative() as unknown as {
  modelGrad(spec: unknown): { loss: number; grads: Record<string, { A: Float64Array; B: Float64Array }>[] };
};

let dir: string;
let tokenizer: TextTokenizer;
let arch: TinyArch;
let sequences: Sequences;
beforeAll(() => {
  dir = tempDir("loraflow-mask-");
  tokenizer = loadTokenizer(writeSmallTokenizer(path.join(dir, "tok")));
  arch = { layers: 2, hidden: 16, heads: 4, kvHeads: 2, headDim: 4, ffn: 24, vocab: tokenizer.size, ropeTheta: 10000, normEps: 1e-5, tieEmbeddings: false };
  const file = path.join(dir, "chat.jsonl");
  const messages = [
    { role: "system", content: "Be brief." },
    { role: "user", content: "Reverse the word hello" },
    { role: "assistant", content: "olleh" },
    { role: "user", content: "Upper-case quiet" },
    { role: "assistant", content: "QUIET" },
  ];
  fs.writeFileSync(file, JSON.stringify({ messages }) + "\n");
  const data = readDataset({ file, format: "chat", seqLen: 64, vocab: arch.vocab, tokenizer, skipBadLines: false, evalSplit: 0, seed: 0 });
  sequences = buildSequences(data.train, 64, false);
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** The engine's loss and LoRA gradients of the sequence with these targets (double precision). */
function grad(targets: Int32Array, counted: number) {
  const rows = sequences.seqLen;
  const adapter = randomAdapter(arch, 5, 2, 2, 0, ["q_proj", "v_proj", "down_proj"]);
  return native.modelGrad({
    config: arch,
    weights: randomWeights(arch, 3),
    adapters: [adapter],
    stages: [[0, 2 * arch.layers]],
    microBatches: [
      {
        tokens: sequences.tokens,
        targets,
        segStart: sequences.segStart,
        pos: sequences.pos,
        rowKeys: new BigUint64Array(rows),
        parts: [{ adapter: 0, row0: 0, rows, gradScale: 1 / counted }],
      },
    ],
    precision: "double",
  });
}

describe("masking", () => {
  it("prompt tokens contribute nothing to the loss or the gradients: both are the sums over the response positions alone", () => {
    const targets = sequences.targets;
    const counted = [...targets].filter((t) => t >= 0).length;
    const responses = [...targets.keys()].filter((t) => targets[t]! >= 0);
    // The data pipeline counted the two replies and their end-of-turn tokens only.
    expect(tokenizer.decode(responses.map((t) => targets[t]!))).toBe("olleh<|eos|>QUIET<|eos|>");
    const whole = grad(targets, counted);

    let loss = 0;
    const sum: Record<string, { A: Float64Array; B: Float64Array }> = {};
    for (const t of responses) {
      const one = new Int32Array(targets.length).fill(-100);
      one[t] = targets[t]!;
      const g = grad(one, counted);
      loss += g.loss;
      for (const [site, { A, B }] of Object.entries(g.grads[0]!)) {
        sum[site] ??= { A: new Float64Array(A.length), B: new Float64Array(B.length) };
        A.forEach((v, i) => (sum[site]!.A[i]! += v));
        B.forEach((v, i) => (sum[site]!.B[i]! += v));
      }
    }
    expect(Math.abs(loss - whole.loss) / whole.loss).toBeLessThan(1e-12);
    let diff = 0;
    let scale = 0;
    for (const [site, { A, B }] of Object.entries(whole.grads[0]!)) {
      A.forEach((v, i) => ((diff += (v - sum[site]!.A[i]!) ** 2), (scale += v * v)));
      B.forEach((v, i) => ((diff += (v - sum[site]!.B[i]!) ** 2), (scale += v * v)));
    }
    expect(scale).toBeGreaterThan(0);
    expect(Math.sqrt(diff / scale)).toBeLessThan(1e-10);

    // Counting the prompt too would change both: the sums above could not have matched it.
    const unmasked = Int32Array.from(targets.keys(), (t) => (t + 1 < targets.length && sequences.segStart[t + 1] === sequences.segStart[t] ? sequences.tokens[t + 1]! : -100));
    const all = grad(unmasked, counted);
    expect(Math.abs(all.loss - whole.loss) / whole.loss).toBeGreaterThan(1e-3);
  });
});
