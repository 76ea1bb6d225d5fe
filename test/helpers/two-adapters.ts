import { randomAdapter, type TestAdapter, type TestSequence, type TinyArch } from "./tiny-llama.js";

/** The whole-model gradient tests' model: two layers, GQA, untied head. */
export const ARCH: TinyArch = { layers: 2, hidden: 16, heads: 4, kvHeads: 2, headDim: 4, ffn: 24, vocab: 32, ropeTheta: 10000, normEps: 1e-5, tieEmbeddings: false };

/** Two adapters that differ in everything an adapter can differ in. */
export const adapters = (dropout: number): TestAdapter[] => [
  randomAdapter(ARCH, 11, 2, 2.0, dropout, ["q_proj", "v_proj", "o_proj", "down_proj"]),
  randomAdapter(ARCH, 12, 3, 0.5, dropout / 2, ["k_proj", "gate_proj", "up_proj", "down_proj"]),
];

/** Two sequences of each adapter, packed examples of different lengths. */
export const SEQUENCES: TestSequence[] = [
  { adapter: 0, examples: [[1, 5, 9, 2], [7, 3, 3]], seed: 100 },
  { adapter: 0, examples: [[4, 4, 8, 15, 16]], seed: 101 },
  { adapter: 1, examples: [[23, 1, 2], [9, 9], [30, 31, 0]], seed: 200 },
  { adapter: 1, examples: [[6, 12, 18, 24, 30]], seed: 201 },
];
