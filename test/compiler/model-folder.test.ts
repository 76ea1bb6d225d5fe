import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { compile } from "../../compiler/index.js";
import { makeFixture } from "../helpers/fixture.js";

let fixture: string;
beforeAll(() => {
  fixture = makeFixture();
});
afterAll(() => fs.rmSync(fixture, { recursive: true, force: true }));

const job = (folder: string, extra = "") => `model m { from "${folder}" ${extra} }\nadapter a { data "data/b.jsonl"  format tokens  batch 4  epochs 2  targets all  rank 4 }`;

describe("Hugging Face model folders", () => {
  it.each([
    { name: "one safetensors file", folder: "models/tiny", files: ["model.safetensors"], index: null },
    { name: "shards with an index", folder: "models/sharded", files: ["model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors"], index: "model.safetensors.index.json" },
    { name: "tied embeddings (no lm_head)", folder: "models/tied", files: ["model.safetensors"], index: null },
  ])("$name", ({ folder, files, index }) => {
    const result = compile(job(folder), { baseDir: fixture, planDir: path.join(fixture, "out") });
    expect(result.diagnostics).toEqual([]);
    const plan = result.plan!;
    expect(plan.model.folder).toBe("inputs/model");
    expect(result.links).toContainEqual({ path: "inputs/model", target: path.join(fixture, folder) });
    expect(plan.model.weights).toEqual({ format: "safetensors", index, files, dtypes: ["F32"] });
    expect(plan.model.config).toMatchObject({ layers: 2, hidden: 16, heads: 4, kvHeads: 2, headDim: 4, ffn: 32, vocab: 64, normEps: 1e-5, maxSeq: 128 });
    expect(plan.model.dtype).toBe("fp32");
    // 20 examples, 2 epochs, batch 4.
    expect(plan.adapters[0]!.steps).toBe(10);
    expect(plan.adapters[0]!.targets).toHaveLength(7);
    expect(plan.adapters[0]!.data.path).toBe("inputs/a/b.jsonl");
  });

  it("inline values that agree with config.json are accepted, and dtype overrides", () => {
    const result = compile(job("models/tiny", "layers 2 kv_heads 2 dtype bf16"), { baseDir: fixture });
    expect(result.diagnostics).toEqual([]);
    expect(result.plan!.model.dtype).toBe("bf16");
  });

  it("a folder without weights compiles with a warning", () => {
    const result = compile(job("models/config-only"), { baseDir: fixture });
    expect(result.diagnostics.map((d) => [d.code, d.severity])).toEqual([["LF3007", "warning"]]);
    expect(result.plan!.model.weights).toBeNull();
  });
});
