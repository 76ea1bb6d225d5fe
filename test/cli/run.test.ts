import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { tempDir, TINY, writeLlamaFolder } from "../helpers/hf-model.js";
import { ROOT } from "../helpers/paths.js";
import { writeTokenData } from "../helpers/train-job.js";

let work: string;

function loraflow(...args: string[]) {
  return loraflowWith({}, ...args);
}

function loraflowWith(env: Record<string, string>, ...args: string[]) {
  const r = spawnSync(process.execPath, [path.join(ROOT, "bin", "loraflow.js"), ...args], { cwd: work, encoding: "utf8", env: { ...process.env, ...env } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Every file under a folder with its bytes, to show that a failed run changed nothing. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const entry of fs.readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) out[path.relative(dir, path.join(entry.parentPath, entry.name))] = fs.readFileSync(path.join(entry.parentPath, entry.name)).toString("base64");
  }
  return out;
}

beforeAll(() => {
  work = tempDir("loraflow-run-");
  fs.cpSync(path.join(ROOT, "examples"), path.join(work, "examples"), { recursive: true });
});
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

describe("loraflow run", () => {
  it("compiles a job, trains it, prints every step and writes the adapters", () => {
    const r = loraflow("run", "examples/tiny.lf", "--max-steps", "2");
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/training 2 adapters on 2 CPU stage workers \(1f1b\)/);
    expect(r.stdout).toMatch(/count\s+step 2\/2\s+loss \d+\.\d{4}/);
    expect(r.stdout).toMatch(/stage 1: busy .* waiting/);
    expect(fs.readdirSync(path.join(work, "out/tiny/adapters")).sort()).toEqual(["count", "motif"]);
    expect(fs.readdirSync(path.join(work, "out/tiny/adapters/count")).sort()).toEqual(["adapter_config.json", "adapter_model.safetensors"]);
  });

  it("writes the measured first rounds (trace.run.json) in the layout of the predicted trace.json, each stage's idle beside the plan's prediction, and metrics.jsonl", () => {
    const r = loraflow("run", "examples/tiny.lf", "--max-steps", "3", "-o", "out/traced");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/stage 0: busy [\d.]+ s, waiting [\d.]+ s \(\d+% idle; the plan predicts \d+%\)/);
    expect(r.stdout).toContain("wrote out/traced/trace.run.json: the first rounds as they ran, beside the plan's trace.json");
    type Event = { cat?: string; ph: string; pid: number; tid: number; ts?: number; dur?: number; name: string };
    const read = (f: string) => JSON.parse(fs.readFileSync(path.join(work, "out/traced", f), "utf8")) as { traceEvents: Event[]; otherData: Record<string, string> };
    const measured = read("trace.run.json");
    const predicted = read("trace.json");
    const kinds = (t: { traceEvents: Event[] }) => t.traceEvents.filter((e) => e.cat !== "idle").map((e) => `${e.ph} ${e.cat ?? ""} ${e.pid} ${e.tid} ${e.name}`).sort();
    // The same slices, messages and arrows; only times (and so the waits) differ.
    expect(kinds(measured)).toEqual(kinds(predicted));
    expect(measured.otherData["covers"]).toBe("the first 2 rounds of the first phase, as the engine ran them");
    // On each stage's compute thread, slices follow one another.
    for (const pid of [0, 1]) {
      const slices = measured.traceEvents.filter((e) => e.ph === "X" && e.pid === pid && e.tid === 0).sort((x, y) => x.ts! - y.ts!);
      slices.forEach((e, i) => i > 0 && expect(e.ts!).toBeGreaterThanOrEqual(slices[i - 1]!.ts! + slices[i - 1]!.dur! - 1e-3));
    }
    const metrics = fs.readFileSync(path.join(work, "out/traced/metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    expect(metrics).toHaveLength(6);
    expect(metrics[0]).toEqual({ adapter: expect.any(String), step: 1, loss: expect.any(Number), lr: expect.any(Number), grad_norm: expect.any(Number), tokens: expect.any(Number), counted_tokens: expect.any(Number), seconds: expect.any(Number) });
  });

  it("runs a compiled plan folder", () => {
    const r = loraflow("run", "out/tiny", "--max-steps", "1", "--threads", "1");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/motif\s+step 1\/1/);
  });

  it("refuses a corrupt plan, leaving earlier outputs as they were", () => {
    const before = snapshot(path.join(work, "out/tiny/adapters"));
    fs.cpSync(path.join(work, "out/tiny"), path.join(work, "out/corrupt"), { recursive: true });
    fs.writeFileSync(path.join(work, "out/corrupt/plan.json"), fs.readFileSync(path.join(work, "out/tiny/plan.json"), "utf8").replace('"F mb0"', '"F mb77"'));
    const r = loraflow("run", "out/corrupt");
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/error LF5002: .*mb77 is not in the phase/);
    fs.writeFileSync(path.join(work, "out/corrupt/plan.json"), "{ not json");
    expect(loraflow("run", "out/corrupt").stderr).toMatch(/error LF5001/);
    expect(snapshot(path.join(work, "out/tiny/adapters"))).toEqual(before);
  });

  it("refuses malformed data before training, naming the file and line, and writes nothing", () => {
    const before = snapshot(path.join(work, "out/tiny/adapters"));
    const data = path.join(work, "examples/data/count.jsonl");
    const good = fs.readFileSync(data, "utf8");
    fs.writeFileSync(data, good.replace(/\n/, '\n{"input_ids": [1, 2], "labels": [1]}\n'));
    const r = loraflow("run", "out/tiny");
    fs.writeFileSync(data, good);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/count\.jsonl:2: `labels` has 1 entries, `input_ids` 2/);
    expect(r.stdout).not.toMatch(/step 1/);
    expect(snapshot(path.join(work, "out/tiny/adapters"))).toEqual(before);
  });

  it("refuses weights that no longer match the plan's config", () => {
    const model = path.join(work, "model");
    writeLlamaFolder(model);
    writeTokenData(path.join(work, "data.jsonl"), 8, TINY.vocab, 3);
    fs.writeFileSync(path.join(work, "job.lf"), 'model m { from "model" }\nadapter a { data "data.jsonl" format tokens seq_len 16 batch 2 steps 1 }\n');
    expect(loraflow("compile", "job.lf").code).toBe(0);
    writeLlamaFolder(model, { ...TINY, ffn: 40 }, { config: { intermediate_size: 32 } });
    const r = loraflow("run", "out/job");
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/model\.safetensors: `model\.layers\.0\.mlp\.gate_proj\.weight` is \[40, 16\], the plan's config implies \[32, 16\]/);
    expect(fs.existsSync(path.join(work, "out/job/adapters"))).toBe(false);
  });

  it.each([
    { args: ["run", "examples/tiny.lf", "--backend", "cuda"], pattern: /error LF6011: --backend cuda: (no usable CUDA driver \(cudaGetDeviceCount: cudaErrorInsufficientDriver|this build of loraflow has no CUDA backend)/ },
    { args: ["run", "examples/nope.lf"], pattern: /cannot read examples\/nope\.lf/ },
    { args: ["run", "examples/llama2-7b-4xa6000.lf"], pattern: /error LF6012: text data \(alpaca, completion, chat\) needs a tokenizer, and the model has none/ },
    { args: ["run", "examples/tiny.lf", "--max-steps", "0"], pattern: /expected a whole number >= 1/ },
  ])("refuses $args with a clear message", ({ args, pattern }) => {
    const r = loraflow(...args);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(pattern);
  });
});

describe("loraflow run --backend", () => {
  const fakes = path.join(ROOT, process.env["LORAFLOW_NATIVE_BUILD"] ?? "build", "fake");
  const emulated = { LORAFLOW_CUBLASLT: path.join(fakes, "libcublasLt.so"), LORAFLOW_NCCL: path.join(fakes, "libnccl.so") };
  const losses = (stdout: string) => stdout.split("\n").filter((l) => /step \d+\/\d+\s+loss/.test(l)).map((l) => l.replace(/\s+lr.*/, ""));

  it("cuda-emulated trains on emulated GPUs (a stage each, talking through the fake NCCL) as the CPU engine does", () => {
    const gpu = loraflowWith(emulated, "run", "examples/tiny.lf", "--backend", "cuda-emulated", "--max-steps", "2", "-o", "out/emulated");
    expect(gpu.stderr).toBe("");
    expect(gpu.code).toBe(0);
    expect(gpu.stdout).toMatch(/training 2 adapters in fp32 on 2 stages over 2 emulated GPUs \(1f1b\)/);
    const cpu = loraflow("run", "examples/tiny.lf", "--backend", "cpu", "--max-steps", "2", "-o", "out/cpu");
    expect(cpu.code).toBe(0);
    // fp32 on both: every printed loss (4 decimals) is the same.
    expect(losses(gpu.stdout)).toEqual(losses(cpu.stdout));
    expect(losses(gpu.stdout)).toHaveLength(4);
    expect(fs.readdirSync(path.join(work, "out/emulated/adapters")).sort()).toEqual(["count", "motif"]);
  });

  it("auto trains a plan compiled for the CPU on the CPU engine, and one compiled for GPUs there too when there is no GPU, saying why", () => {
    const cpu = loraflow("run", "examples/tiny.lf", "--max-steps", "1", "-o", "out/auto");
    expect(cpu.stderr).toBe("");
    expect(cpu.stdout).toMatch(/on 2 CPU stage workers/);
    fs.writeFileSync(path.join(work, "gpu.lf"), fs.readFileSync(path.join(work, "examples/tiny.lf"), "utf8").replace("cluster laptop { gpu cpu  gpus 2 }", "cluster box { gpu H100  gpus 2 }").replaceAll('"data/', '"examples/data/'));
    const gpu = loraflow("run", "gpu.lf", "--max-steps", "1");
    expect(gpu.code).toBe(0);
    expect(gpu.stderr).toMatch(/note: training on the CPU engine: the CUDA backend cannot run here \((no usable CUDA driver|this build of loraflow has no CUDA backend)/);
    expect(gpu.stdout).toMatch(/on 2 CPU stage workers/);
  });

  it("cuda-emulated without the fake cuBLASLt says what it looked for", () => {
    const r = loraflowWith({ LORAFLOW_CUBLASLT: path.join(work, "no-such-libcublasLt.so") }, "run", "examples/tiny.lf", "--backend", "cuda-emulated", "--max-steps", "1");
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/error LF6011: --backend cuda-emulated: .*cuBLASLt.*no-such-libcublasLt\.so/);
  });
});

describe("loraflow run on a model too large for this machine", () => {
  it("refuses before loading anything", () => {
    fs.writeFileSync(path.join(work, "big.lf"), 'model big { arch llama layers 80 hidden 8192 heads 64 kv_heads 8 ffn 28672 vocab 32000 }\nadapter a { data "examples/data/count.jsonl" format tokens steps 1 }\ncluster c { gpu cpu memory 1TB }\n');
    const r = loraflow("run", "big.lf");
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/error LF6007: model big has 68\.98B parameters: 275\.9 GB in fp32 on the CPU; the run needs about [\d.]+ GB in all, and this machine has [\d.]+ GB free/);
  });
});
