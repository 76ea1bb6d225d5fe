import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runPlan } from "../../runtime/run.js";
import { tempDir } from "../helpers/hf-model.js";
import { compileOrThrow, writeTokenData } from "../helpers/train-job.js";

/**
 * transformers' optimization.py, written out: the multiplier of the peak rate at 0-based step k
 * (`get_scheduler(name, num_warmup_steps=w, num_training_steps=total)`).
 */
const HF: Record<string, (k: number, w: number, total: number) => number> = {
  constant: () => 1,
  constant_with_warmup: (k, w) => (k < w ? k / Math.max(1, w) : 1),
  linear: (k, w, total) => (k < w ? k / Math.max(1, w) : Math.max(0, (total - k) / Math.max(1, total - w))),
  cosine: (k, w, total) => {
    if (k < w) return k / Math.max(1, w);
    const progress = (k - w) / Math.max(1, total - w);
    return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * 2 * 0.5 * progress)));
  },
};

let dir: string;
beforeAll(() => {
  dir = tempDir("loraflow-lr-");
  writeTokenData(path.join(dir, "a.jsonl"), 8, 32, 1);
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

async function rates(schedule: string, warmup: number, steps: number): Promise<number[]> {
  const job = `
model toy { arch llama layers 1 hidden 32 heads 2 ffn 64 vocab 32 max_seq 16 dtype fp32 seed 1 }
adapter a { rank 2 targets q_proj data "a.jsonl" format tokens seq_len 8 batch 1 micro_batch 1 steps ${steps}
            optimizer adamw { lr 0.5 warmup ${warmup} schedule ${schedule} } seed 1 }
cluster box { gpu cpu gpus 1 }
plan { schedule 1f1b stages 1 }`;
  const planDir = path.join(dir, `plan-${schedule}-${warmup}`);
  const plan = compileOrThrow(job, { baseDir: dir, planDir });
  const lr: number[] = [];
  await runPlan(plan, planDir, { save: false, onStep: (s) => lr.push(s.lr) });
  return lr;
}

describe("learning-rate schedules follow Hugging Face's get_scheduler", () => {
  it.each([
    ["constant", 3, 7],
    ["constant", 0, 4],
    ["constant_with_warmup", 3, 7],
    ["constant_with_warmup", 0, 4],
    ["linear", 2, 6],
    ["cosine", 2, 7],
    ["cosine", 0, 5],
  ])("%s with warmup %i over %i steps", async (schedule, warmup, steps) => {
    const got = await rates(schedule, warmup, steps);
    const want = Array.from({ length: steps }, (_, k) => 0.5 * HF[schedule]!(k, warmup, steps));
    expect(got).toHaveLength(steps);
    got.forEach((g, k) => expect(g, `step ${k}`).toBeCloseTo(want[k]!, 12));
  });

  it("constant ignores warmup; constant_with_warmup starts from 0", async () => {
    expect((await rates("constant", 3, 4))[0]).toBe(0.5);
    expect((await rates("constant_with_warmup", 3, 4))[0]).toBe(0);
  });
});
