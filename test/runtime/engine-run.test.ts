// The standalone driver (build/loraflow_engine_run) on run files that `loraflow run
// --engine-run` writes: it trains what Node would (the same bits on the CPU engine, base weights
// drawn from the same seed included), on emulated GPUs against the CPU engine, and refuses a
// damaged or hand-edited file with a message, never a crash.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Plan } from "../../compiler/index.js";
import { writeEngineRun } from "../../runtime/engine-run.js";
import { runPlan } from "../../runtime/run.js";
import { tempDir, writeLlamaFolder } from "../helpers/hf-model.js";
import { rng } from "../helpers/random.js";
import { compileOrThrow, writeTokenData } from "../helpers/train-job.js";

const root = path.join(path.dirname(new URL(import.meta.url).pathname), "..", "..");
const build = path.join(root, process.env["LORAFLOW_NATIVE_BUILD"] ?? "build");
const driver = path.join(build, "loraflow_engine_run");
const emulated = { LORAFLOW_CUBLASLT: path.join(build, "fake", "libcublasLt.so"), LORAFLOW_NCCL: path.join(build, "fake", "libnccl.so") };

const JOB = `
model toy { arch llama layers 2 hidden 64 heads 4 kv_heads 2 ffn 96 vocab 64 max_seq 32 dtype fp32 seed 5 }
adapter a { rank 4 alpha 8 dropout 0.1 targets q_proj v_proj data "a.jsonl" format tokens seq_len 16 batch 2 micro_batch 1 steps 3
            optimizer adamw { lr 1e-2 warmup 1 } seed 11 }
adapter b { rank 2 alpha 4 targets all data "b.jsonl" format tokens pack true seq_len 16 batch 2 micro_batch 2 steps 2
            optimizer sgd { lr 0.1 momentum 0.9 } seed 12 }
cluster box { gpu cpu gpus 2 }
plan { schedule 1f1b stages 2 }
`;

let dir: string;
beforeAll(() => {
  dir = tempDir("loraflow-engine-run-");
  writeTokenData(path.join(dir, "a.jsonl"), 12, 64, 1);
  writeTokenData(path.join(dir, "b.jsonl"), 16, 64, 2);
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const plan = (source = JOB): Plan => compileOrThrow(source, { baseDir: dir, planDir: path.join(dir, "plan") });

function drive(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(driver, args, { encoding: "utf8", env: { ...process.env, ...env }, timeout: 120_000 });
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

interface Report {
  backend: string;
  steps: { adapter: string; step: number; loss: number }[];
  tokens: number;
  lossError?: number;
  updateError?: number;
}
const report = (file: string): Report => JSON.parse(fs.readFileSync(file, "utf8")) as Report;

describe("loraflow_engine_run", () => {
  it("trains a run file on the CPU engine to the same bits as loraflow run, weights drawn from the seed included", async () => {
    const p = plan();
    const file = path.join(dir, "toy.lfrun");
    writeEngineRun(p, path.join(dir, "plan"), file);
    const r = drive([file, "--report", path.join(dir, "cpu.json")]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/tokens in [\d.]+ s \(\d+ tokens\/s\) on cpu/);
    const node: { adapter: string; step: number; loss: number }[] = [];
    await runPlan(p, path.join(dir, "plan"), { save: false, onStep: (s) => node.push({ adapter: s.adapter, step: s.step, loss: s.loss }) });
    expect(report(path.join(dir, "cpu.json")).steps.map(({ adapter, step, loss }) => ({ adapter, step, loss }))).toEqual(node);
  });

  it("trains it on two emulated GPUs and holds it to the CPU engine (--compare-cpu)", () => {
    const file = path.join(dir, "toy.lfrun");
    writeEngineRun(plan(), path.join(dir, "plan"), file);
    const r = drive([file, "--backend", "cuda-emulated", "--devices", "0,1", "--compare-cpu", "1e-4,1e-4", "--report", path.join(dir, "gpu.json"), "--quiet"], emulated);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/against the CPU engine: loss error [\d.e-]+ \(bound 0\.0001\), update error [\d.e-]+ \(bound 0\.0001\)/);
    const g = report(path.join(dir, "gpu.json"));
    expect(g.backend).toBe("cuda-emulated");
    expect(g.lossError).toBeLessThan(1e-4);
    expect(g.updateError).toBeLessThan(1e-4);
  });

  it("carries a model folder's weights in the file", () => {
    writeLlamaFolder(path.join(dir, "model"));
    const p = plan(`model m { from "model" }\nadapter a { data "a.jsonl" format tokens seq_len 16 batch 2 steps 2 }\n`);
    const file = path.join(dir, "folder.lfrun");
    writeEngineRun(p, path.join(dir, "plan"), file);
    const r = drive([file, "--quiet"]);
    expect(r.code, r.stderr).toBe(0);
    expect(fs.readFileSync(file).subarray(16, 16 + Number(fs.readFileSync(file).readBigUInt64LE(8))).toString()).toContain('"weights":{"model.embed_tokens.weight":{"$array":"f32"');
  });

  it.each([
    { name: "a file that is not one", edit: () => Buffer.from("hello"), pattern: /not a run file/ },
    { name: "another format", edit: (b: Buffer) => Buffer.concat([Buffer.from("LFRUN999"), b.subarray(8)]), pattern: /does not start with LFRUN001/ },
    { name: "a truncated file", edit: (b: Buffer) => b.subarray(0, b.length - 100), pattern: /run past the end of the file/ },
    { name: "a header longer than the file", edit: (b: Buffer) => { const c = Buffer.from(b); c.writeBigUInt64LE(BigInt(b.length), 8); return c; }, pattern: /a header of \d+ bytes in a file of/ },
    { name: "an array of an unknown type", edit: (b: Buffer) => Buffer.from(b.toString("latin1").replace('"$array":"i32"', '"$array":"i16"'), "latin1"), pattern: /an array of unknown type `i16`/ },
  ])("refuses $name, saying so (exit 2)", ({ edit, pattern }) => {
    const file = path.join(dir, "toy.lfrun");
    writeEngineRun(plan(), path.join(dir, "plan"), file);
    const bad = path.join(dir, "bad.lfrun");
    fs.writeFileSync(bad, edit(fs.readFileSync(file)));
    const r = drive([bad]);
    expect(r.signal).toBeNull();
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(pattern);
  });

  it("ends every damaged header in an error, never a signal or a hang", () => {
    const file = path.join(dir, "toy.lfrun");
    writeEngineRun(plan(), path.join(dir, "plan"), file);
    const good = fs.readFileSync(file);
    const header = Number(good.readBigUInt64LE(8));
    const next = rng(9);
    const outcomes = new Map<number, number>();
    for (let trial = 0; trial < 40; trial++) {
      const b = Buffer.from(good);
      for (let k = 0; k < 1 + Math.floor(next() * 4); k++) b[16 + Math.floor(next() * header)] = Math.floor(next() * 128);
      const bad = path.join(dir, "fuzz.lfrun");
      fs.writeFileSync(bad, b);
      const r = drive([bad, "--quiet"]);
      expect(r.signal, r.stderr).toBeNull();
      expect([0, 1, 2]).toContain(r.code);
      if (r.code !== 0) expect(r.stderr).toMatch(/^loraflow_engine_run: /);
      outcomes.set(r.code!, (outcomes.get(r.code!) ?? 0) + 1);
    }
    expect(outcomes.get(2) ?? 0).toBeGreaterThan(0);
  }, 300_000);
});
