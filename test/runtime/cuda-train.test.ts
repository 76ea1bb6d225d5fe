// Training on the CUDA backend over emulated GPUs (host memory, lazily run streams, kernels on
// the CPU harness, the project's fake cuBLASLt and NCCL), held to the CPU engine on the same
// plan: three stages on one, two and three GPUs, so that stages share a device (messages copied
// on it) or talk through NCCL (a two-rank communicator per link, on comm streams of their own).
//
// Tolerances, of each step's loss and of what training changed in each adapter (its final A and
// B less their initial values, all sites together, by norm):
//   fp32 programs: the same arithmetic in another order (blocked GEMMs, a tree-summed norm),
//     about 1e-7 per operation. AdamW divides each update by its own running RMS, so the
//     update's relative error is about the gradient's. Measured: loss 4e-8, update 5e-6;
//     bounds 1e-4 of both.
//   bf16 programs: the base weights and every activation rounded to 8 significant bits. The
//     gradients then differ by 1-2% (test/runtime/cuda-backend.test.ts), and AdamW's first
//     steps, about lr * sign(gradient) each, turn the gradients' small entries' errors into
//     whole steps of the other sign: the update differs more (measured 5%; bound 10%). The loss,
//     an average over every counted token, moves far less (measured 1e-4; bound 1e-3).
// And the GPU split changes nothing: the kernels' results do not depend on thread order or on
// where a stage runs, so one, two or three GPUs train to the same bits.
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Plan } from "../../compiler/index.js";
import { runPlan, type RunResult } from "../../runtime/run.js";
import { initLora, type LoraSites } from "../../runtime/weights/lora.js";
import { tempDir } from "../helpers/hf-model.js";
import { compileOrThrow, writeTokenData } from "../helpers/train-job.js";

const root = path.join(path.dirname(new URL(import.meta.url).pathname), "..", "..");
const fakes = path.join(root, process.env["LORAFLOW_NATIVE_BUILD"] ?? "build", "fake");

const job = (dtype: string, lr = "1e-2") => `
model toy { arch llama layers 3 hidden 64 heads 4 kv_heads 2 ffn 96 vocab 64 max_seq 32 dtype ${dtype} seed 3 }
adapter a { rank 4 alpha 8 dropout 0.1 targets q_proj v_proj data "a.jsonl" format tokens seq_len 16 batch 2 micro_batch 1 steps 4
            optimizer adamw { lr ${lr} weight_decay 0.01 warmup 1 schedule cosine clip 0.5 } seed 11 }
adapter b { rank 2 alpha 4 targets all data "b.jsonl" format tokens pack true seq_len 16 batch 2 micro_batch 2 steps 3
            optimizer sgd { lr 0.1 momentum 0.9 } seed 12 }
cluster box { gpu A100-80G gpus 3 }
plan { schedule 1f1b stages 3 }
`;

let dir: string;
beforeAll(() => {
  process.env["LORAFLOW_CUBLASLT"] = path.join(fakes, "libcublasLt.so");
  process.env["LORAFLOW_NCCL"] = path.join(fakes, "libnccl.so");
  dir = tempDir("loraflow-cuda-train-");
  writeTokenData(path.join(dir, "a.jsonl"), 12, 64, 1);
  writeTokenData(path.join(dir, "b.jsonl"), 16, 64, 2);
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const plan = (source: string): Plan => compileOrThrow(source, { baseDir: dir, planDir: path.join(dir, "plan") });

interface Trained {
  run: RunResult;
  losses: Map<string, number[]>;
}
async function train(p: Plan, backend: "cpu" | "cuda-emulated", devices?: number[]): Promise<Trained> {
  const losses = new Map<string, number[]>();
  const run = await runPlan(p, path.join(dir, "plan"), {
    save: false,
    backend,
    ...(devices && { devices }),
    onStep: (s) => losses.set(s.adapter, [...(losses.get(s.adapter) ?? []), s.loss]),
  });
  return { run, losses };
}

function worstLossError(got: Trained, want: Trained): number {
  let worst = 0;
  for (const [name, ref] of want.losses) {
    const l = got.losses.get(name)!;
    expect(l).toHaveLength(ref.length);
    ref.forEach((x, i) => (worst = Math.max(worst, Math.abs(l[i]! - x) / Math.abs(x))));
  }
  return worst;
}

/** The larger, over adapters, of ||update_got - update_want|| / ||update_want||, an update being final less initial weights. */
function worstUpdateError(p: Plan, got: RunResult, want: RunResult): number {
  let worst = 0;
  p.adapters.forEach((a, i) => {
    const init: LoraSites = initLora(p, a);
    let diff = 0, norm = 0;
    for (const [site, ref] of Object.entries(want.adapters[i]!.sites)) {
      for (const which of ["A", "B"] as const) {
        const g = got.adapters[i]!.sites[site]![which], w = ref[which], w0 = init[site]![which];
        w.forEach((x, k) => ((diff += (g[k]! - x) ** 2), (norm += (x - w0[k]!) ** 2)));
      }
    }
    worst = Math.max(worst, Math.sqrt(diff / norm));
  });
  return worst;
}

function sameBits(a: RunResult, b: RunResult): boolean {
  return a.adapters.every((x, i) =>
    Object.entries(x.sites).every(([site, ab]) => (["A", "B"] as const).every((w) => Buffer.from(ab[w].buffer).equals(Buffer.from(b.adapters[i]!.sites[site]![w].buffer)))),
  );
}

describe.each([
  { dtype: "fp32", loss: 1e-4, update: 1e-4 },
  { dtype: "bf16", loss: 1e-3, update: 0.1 },
])("$dtype programs", ({ dtype, loss, update }) => {
  it("train three stages on 1, 2 and 3 emulated GPUs as the CPU engine does, and to the same bits on each split", async () => {
    const p = plan(job(dtype));
    const cpu = await train(p, "cpu");
    const runs: Trained[] = [];
    for (const devices of [[0, 0, 0], [0, 0, 1], [0, 1, 2]]) {
      const gpu = await train(p, "cuda-emulated", devices);
      const lossError = worstLossError(gpu, cpu), updateError = worstUpdateError(p, gpu.run, cpu.run);
      console.log(`${dtype} on GPUs [${devices.join(", ")}]: loss error ${lossError.toExponential(2)}, update error ${updateError.toExponential(2)}`);
      expect(lossError).toBeLessThan(loss);
      expect(updateError).toBeLessThan(update);
      expect(gpu.run.loopAllocations).toBe(-1);
      runs.push(gpu);
    }
    expect(sameBits(runs[1]!.run, runs[0]!.run) && sameBits(runs[2]!.run, runs[0]!.run)).toBe(true);
  }, 120_000);
});

it("fails every stage, across GPUs too, when one stops: a diverged adapter ends the run with its error, no stage left waiting", async () => {
  const p = plan(job("bf16", "1e30"));
  const started = performance.now();
  await expect(train(p, "cuda-emulated", [0, 1, 2])).rejects.toThrow(/adapter a: the (loss|gradient norm) of step \d+ is not finite/);
  expect(performance.now() - started).toBeLessThan(30_000);
}, 60_000);

it("a run on emulated GPUs stopped after each round and resumed ends with the bits of one never stopped (moments leave and re-enter the device)", async () => {
  const p = plan(job("bf16"));
  const planDir = path.join(dir, "plan");
  const whole = await runPlan(p, planDir, { save: false, backend: "cuda-emulated", devices: [0, 1, 1] });
  let last: RunResult | undefined;
  let stops = 0;
  for (let run = 0; run < 10; run++) {
    last = await runPlan(p, planDir, { backend: "cuda-emulated", devices: [0, 1, 1], stop: AbortSignal.abort(), resume: run > 0 });
    if (!last.stopped) break;
    stops++;
  }
  expect(stops).toBeGreaterThanOrEqual(2);
  expect(sameBits(last!, whole)).toBe(true);
}, 120_000);
