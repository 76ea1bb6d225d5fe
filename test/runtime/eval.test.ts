import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writePeftAdapter } from "../../runtime/weights/lora.js";
import { fromBf16, tempDir, toBf16, writeSafetensors } from "../helpers/hf-model.js";
import { ROOT } from "../helpers/paths.js";
import { referenceLoss } from "../helpers/reference-llama.js";
import { microBatch, randomAdapter, randomWeights, weightShapes, type TestAdapter, type TinyArch } from "../helpers/tiny-llama.js";
import { writeTokenData } from "../helpers/train-job.js";

const ARCH: TinyArch = { layers: 2, hidden: 16, heads: 4, kvHeads: 2, headDim: 4, ffn: 24, vocab: 32, ropeTheta: 10000, normEps: 1e-5, tieEmbeddings: false };

function writeModel(dir: string, weights: Record<string, Float64Array>, dtype: "F32" | "BF16", shards: number, arch: TinyArch = ARCH): void {
  const ARCH = arch;
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(
    path.join(dir, "config.json"),
    JSON.stringify({
      model_type: "llama", hidden_act: "silu", num_hidden_layers: ARCH.layers, hidden_size: ARCH.hidden, num_attention_heads: ARCH.heads,
      num_key_value_heads: ARCH.kvHeads, intermediate_size: ARCH.ffn, vocab_size: ARCH.vocab, rms_norm_eps: ARCH.normEps, rope_theta: ARCH.ropeTheta,
      max_position_embeddings: 64, tie_word_embeddings: false, torch_dtype: dtype === "F32" ? "float32" : "bfloat16",
      ...(ARCH.ropeScaling && { rope_scaling: ARCH.ropeScaling }),
    }),
  );
  const names = Object.keys(weights);
  const per = Math.ceil(names.length / shards);
  const map: Record<string, string> = {};
  for (let s = 0; s < shards; s++) {
    const file = shards === 1 ? "model.safetensors" : `model-0000${s + 1}-of-0000${shards}.safetensors`;
    const part = names.slice(s * per, (s + 1) * per);
    const shapes = weightShapes(ARCH);
    writeSafetensors(path.join(dir, file), part.map((n) => ({ name: n, dtype, shape: shapes[n]!, data: weights[n]! })));
    part.forEach((n) => (map[n] = file));
  }
  if (shards > 1) fs.writeFileSync(path.join(dir, "model.safetensors.index.json"), JSON.stringify({ weight_map: map }));
}

let dir: string;
beforeAll(() => {
  dir = tempDir("loraflow-eval-");
  writeTokenData(path.join(dir, "data.jsonl"), 12, ARCH.vocab, 5);
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function evalCli(...args: string[]) {
  const r = spawnSync(process.execPath, [path.join(ROOT, "bin", "loraflow.js"), "eval", ...args], { cwd: dir, encoding: "utf8" });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The reference: each example alone through the independent implementation, summed, averaged. */
function referenceMean(weights: Record<string, Float64Array>, adapter: TestAdapter | null, arch: TinyArch = ARCH): { loss: number; tokens: number } {
  const lines = fs.readFileSync(path.join(dir, "data.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { input_ids: number[]; labels?: number[] });
  let sum = 0;
  let tokens = 0;
  for (const line of lines) {
    const mb = microBatch([{ adapter: 0, examples: [line.input_ids], seed: 0 }], [{ adapter: 0, examples: [line.input_ids], seed: 0 }]);
    const labels = line.labels ?? line.input_ids;
    mb.targets = Int32Array.from(line.input_ids, (_, i) => (i + 1 < labels.length ? labels[i + 1]! : -100));
    mb.parts[0]!.gradScale = 1;
    tokens += mb.targets.filter((t) => t >= 0).length;
    sum += referenceLoss(arch, weights, adapter ? [adapter] : [{ rank: 1, scale: 0, dropout: 0, sites: {} }], mb);
  }
  return { loss: sum / tokens, tokens };
}

describe("loraflow eval", () => {
  const weights = randomWeights(ARCH, 21);
  const adapter = randomAdapter(ARCH, 22, 4, 1.5, 0, ["q_proj", "o_proj", "up_proj"]);

  it.each([
    { name: "fp32, one file", dtype: "F32" as const, shards: 1 },
    { name: "bf16, sharded", dtype: "BF16" as const, shards: 3 },
  ])("agrees with an independent reference ($name), with and without an adapter", ({ name, dtype, shards }) => {
    const model = path.join(dir, `model-${dtype}-${shards}`);
    writeModel(model, weights, dtype, shards);
    const stored = dtype === "F32" ? weights : Object.fromEntries(Object.entries(weights).map(([k, v]) => [k, Float64Array.from(v, (x) => fromBf16(toBf16(x)))]));
    const adapterDir = path.join(dir, `adapter-${name.replace(/\W/g, "")}`);
    const sites = Object.fromEntries(Object.entries(adapter.sites).map(([k, v]) => [k, { A: Float32Array.from(v.A), B: Float32Array.from(v.B) }]));
    writePeftAdapter(
      adapterDir,
      { name: "a", rank: 4, alpha: 6, scaling: 1.5, dropout: 0, rslora: false, targets: ["q_proj", "o_proj", "up_proj"] } as never,
      sites,
      model,
    );
    const asStored = { ...adapter, sites: Object.fromEntries(Object.entries(sites).map(([k, v]) => [k, { A: Float64Array.from(v.A), B: Float64Array.from(v.B) }])) };

    for (const withAdapter of [false, true]) {
      const r = evalCli("--model", model, "--data", "data.jsonl", "--json", ...(withAdapter ? ["--adapter", adapterDir] : []));
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      const got = JSON.parse(r.stdout) as { loss: number; tokens: number };
      const ref = referenceMean(stored, withAdapter ? asStored : null);
      expect(got.tokens).toBe(ref.tokens);
      expect(Math.abs(got.loss - ref.loss) / ref.loss, `loss ${got.loss} vs reference ${ref.loss}`).toBeLessThan(2e-5);
    }
  });

  // head_dim 8: inv_freq 1, 0.1, 0.01, 0.001 (wavelengths 6.3 to 6283), so with an original
  // length of 64 llama3 keeps the first, blends the second and divides the last two.
  const SCALED: TinyArch = { ...ARCH, heads: 2, kvHeads: 1, headDim: 8 };
  it.each([
    { name: "linear", ropeScaling: { rope_type: "linear" as const, factor: 4 } },
    { name: "llama3", ropeScaling: { rope_type: "llama3" as const, factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 } },
  ])("applies $name rope_scaling as transformers does", ({ name, ropeScaling }) => {
    const arch = { ...SCALED, ropeScaling };
    const w = randomWeights(arch, 31);
    const model = path.join(dir, `model-rope-${name}`);
    writeModel(model, w, "F32", 1, arch);
    const got = JSON.parse(evalCli("--model", model, "--data", "data.jsonl", "--json").stdout) as { loss: number };
    const ref = referenceMean(w, null, arch);
    const unscaled = referenceMean(w, null, SCALED);
    expect(Math.abs(got.loss - ref.loss) / ref.loss, `loss ${got.loss} vs reference ${ref.loss}`).toBeLessThan(2e-5);
    // The scaling matters to the loss, by more than the tolerance above.
    expect(Math.abs(unscaled.loss - ref.loss) / ref.loss).toBeGreaterThan(1e-4);
  });

  it("an adapter changes the loss", () => {
    const model = path.join(dir, "model-F32-1");
    const base = JSON.parse(evalCli("--model", model, "--data", "data.jsonl", "--json").stdout).loss;
    const tuned = JSON.parse(evalCli("--model", model, "--data", "data.jsonl", "--json", "--adapter", path.join(dir, "adapter-fp32onefile")).stdout).loss;
    expect(tuned).not.toBe(base);
  });

  it("reads a model, adapter and data named from another folder", () => {
    const elsewhere = tempDir("loraflow-eval-cwd-");
    const args = ["eval", "--model", path.join(dir, "model-F32-1"), "--data", path.join(dir, "data.jsonl"), "--adapter", path.join(dir, "adapter-fp32onefile"), "--json"];
    const r = spawnSync(process.execPath, [path.join(ROOT, "bin", "loraflow.js"), ...args], { cwd: elsewhere, encoding: "utf8" });
    fs.rmSync(elsewhere, { recursive: true, force: true });
    expect(r.stderr).toBe("");
    expect(JSON.parse(r.stdout).loss).toBe(JSON.parse(evalCli(...args.slice(1)).stdout).loss);
  });

  it.each([
    { args: ["--model", "nope", "--data", "data.jsonl"], pattern: /model folder .*nope does not exist/ },
    { args: ["--model", "model-F32-1", "--data", "missing.jsonl"], pattern: /data file .*missing\.jsonl does not exist/ },
    { args: ["--model", "model-F32-1", "--data", "data.jsonl", "--adapter", "nowhere"], pattern: /nowhere\/adapter_config\.json: does not exist/ },
  ])("refuses $args with a clear message", ({ args, pattern }) => {
    const r = evalCli(...args);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(pattern);
  });

  it("reports a malformed data line with its file and line", () => {
    fs.writeFileSync(path.join(dir, "bad.jsonl"), '{"input_ids": [1, 2]}\n{"input_ids": [1, 99]}\n');
    const r = evalCli("--model", "model-F32-1", "--data", "bad.jsonl");
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/bad\.jsonl:2: `input_ids` has 99 at index 1, outside the vocabulary \[0, 32\)/);
  });
});

