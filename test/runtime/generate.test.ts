import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Plan } from "../../compiler/index.js";
import { generate, loadModel, promptIds, type Model } from "../../runtime/generate.js";
import { loadNative } from "../../runtime/native.js";
import { loadBaseWeights } from "../../runtime/weights/base-weights.js";
import { initLora, writePeftAdapter } from "../../runtime/weights/lora.js";
import { tempDir } from "../helpers/hf-model.js";
import { writeSmallTokenizer } from "../helpers/tokenizers.js";
import { compileOrThrow } from "../helpers/train-job.js";

const MODEL = `model m { arch llama layers 2 hidden 32 heads 4 kv_heads 2 ffn 48 vocab 400 max_seq 128 dtype fp32 seed 5 tokenizer "tok" }`;

let dir: string;
let base: { plan: Plan; model: Model };
let adapted: { plan: Plan; model: Model };
beforeAll(() => {
  dir = tempDir("loraflow-generate-");
  writeSmallTokenizer(path.join(dir, "tok"));
  const plain = compileOrThrow(`${MODEL}\nadapter a { rank 2 steps 1 }`, { baseDir: dir, planDir: dir });
  base = { plan: plain, model: loadModel(plain, dir) };
  // An adapter whose B is not zero, so that it changes what the model says.
  const a = plain.adapters[0]!;
  const sites = initLora(plain, { ...a, targets: ["q_proj", "v_proj", "down_proj"] });
  for (const s of Object.values(sites)) s.B.forEach((_, i) => (s.B[i] = Math.sin(i + 1) * 0.5));
  writePeftAdapter(path.join(dir, "adapter"), { ...a, targets: ["q_proj", "v_proj", "down_proj"] }, sites, "m");
  const withInit = compileOrThrow(`${MODEL}\nadapter a { rank 2 steps 1 targets q_proj v_proj down_proj init "adapter" }`, { baseDir: dir, planDir: dir });
  adapted = { plan: withInit, model: loadModel(withInit, dir) };
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe("generation", () => {
  it.each([
    ["greedy, base model", () => base.model, {}],
    ["greedy, with the adapter", () => adapted.model, {}],
    ["sampled (temperature 0.9, top-p 0.8, seed 3), with the adapter", () => adapted.model, { temperature: 0.9, topP: 0.8, seed: 3 }],
  ] as const)("with the KV cache equals without it, token for token: %s", (_, model, options) => {
    const m = model();
    const prompt = promptIds(m.tokenizer, { text: "The quick brown fox" });
    const cached = generate(m, prompt, { maxTokens: 24, ...options });
    const recomputed = generate(m, prompt, { maxTokens: 24, cache: false, ...options });
    expect(cached.length).toBeGreaterThan(0);
    expect(cached).toEqual(recomputed);
  });

  it("the adapter changes what the model says; the seed changes what it samples", () => {
    const prompt = promptIds(base.model.tokenizer, { text: "Reverse hello" });
    expect(generate(adapted.model, prompt, { maxTokens: 16 })).not.toEqual(generate(base.model, prompt, { maxTokens: 16 }));
    const sample = (seed: number) => generate(base.model, prompt, { maxTokens: 16, temperature: 1, seed });
    expect(sample(1)).toEqual(sample(1));
    expect(sample(1)).not.toEqual(sample(2));
  });

  it("computes the model the training engine trains: the next-token loss from its logits equals the engine's", () => {
    const ids = promptIds(base.model.tokenizer, { text: "Upper-case quiet -> QUIET. Add: 12 + 30 = 42." });
    const g = base.model.open(ids.length);
    let loss = 0;
    for (let t = 0; t + 1 < ids.length; t++) {
      const logits = g.feed(Int32Array.from([ids[t]!]));
      let max = -Infinity;
      for (const x of logits) max = Math.max(max, x);
      let sum = 0;
      for (const x of logits) sum += Math.exp(x - max);
      loss += max + Math.log(sum) - logits[ids[t + 1]!]!;
    }
    const T = ids.length;
    const native = loadNative();
    const engine = native.modelGrad({
      config: base.plan.model.config,
      weights: Object.fromEntries(loadBaseWeights(base.plan, dir)),
      adapters: [{ rank: 2, scale: 1, dropout: 0, sites: {} }],
      stages: [[0, 2 * base.plan.model.config.layers]],
      microBatches: [{ tokens: Int32Array.from(ids), targets: Int32Array.from(ids, (_, t) => (t + 1 < T ? ids[t + 1]! : -100)), segStart: new Int32Array(T), pos: Int32Array.from(ids, (_, t) => t), rowKeys: new BigUint64Array(T), parts: [{ adapter: 0, row0: 0, rows: T, gradScale: 1 }] }],
      precision: "float",
      backward: false,
    }).loss;
    expect(Math.abs(engine - loss) / loss).toBeLessThan(1e-5);
  });

  it("a chat prompt ends with the template's generation prompt, BOS once", () => {
    const ids = promptIds(base.model.tokenizer, { chat: [{ role: "user", content: "Reverse hello" }] });
    expect(base.model.tokenizer.decode(ids)).toBe("<|bos|><|user|>\nReverse hello<|eos|>\n<|assistant|>\n");
  });
});
