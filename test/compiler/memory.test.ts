import { describe, expect, it } from "vitest";
import { compile, planMemory, type Summary } from "../../compiler/index.js";
import { peakStash } from "../../compiler/cost/memory.js";
import { parseAction } from "../../compiler/plan/actions.js";
import { flushSchedule } from "../../compiler/schedules/pipeline.js";
import type { ResolvedAdapter } from "../../compiler/ir.js";

const job = (schedule: string, recompute = false) => `
model m { arch llama layers 8 hidden 1024 heads 8 ffn 2816 vocab 1000 max_seq 1024 }
adapter a { data "data/math.jsonl" rank 8 targets all seq_len 1024 batch 16 micro_batch 2 steps 5 }
cluster c { gpu A100-40G gpus 4 }
plan { schedule ${schedule} stages 4 recompute ${recompute} }`;

const summary = (source: string): Summary => {
  const r = compile(source, { baseDir: "examples" });
  expect(r.diagnostics).toEqual([]);
  return r.summary!;
};

describe("memory plan", () => {
  it("1F1B keeps p - s micro-batches in flight on stage s; GPipe keeps all m", () => {
    const phase = flushSchedule([{ index: 0, microBatchesPerStep: 8, steps: 1, microBatch: 1 } as ResolvedAdapter], 4, "1f1b", false)[0]!;
    const gpipe = flushSchedule([{ index: 0, microBatchesPerStep: 8, steps: 1, microBatch: 1 } as ResolvedAdapter], 4, "gpipe", false)[0]!;
    for (let s = 0; s < 4; s++) {
      expect(peakStash(phase.actions[s]!.map((a) => parseAction(a)!), () => 1).inFlight).toBe(4 - s);
      expect(peakStash(gpipe.actions[s]!.map((a) => parseAction(a)!), () => 1).inFlight).toBe(8);
    }
  });

  it("GPipe needs more than 1F1B, and recompute less", () => {
    const onef1b = summary(job("1f1b"));
    const gpipe = summary(job("gpipe"));
    const recompute = summary(job("1f1b", true));
    expect(gpipe.stages[0]!.memoryBytes).toBeGreaterThan(onef1b.stages[0]!.memoryBytes);
    expect(recompute.stages[0]!.memoryBytes).toBeLessThan(onef1b.stages[0]!.memoryBytes);
    for (const s of [onef1b, gpipe, recompute]) for (const st of s.stages) expect(st.memoryBytes).toBeLessThanOrEqual(st.memoryCapacityBytes);
  });

  it("the block being computed has its workspace on top of the stashes, recompute or not", () => {
    const plans = [false, true].map((recompute) => compile(job("1f1b", recompute), { baseDir: "examples" }).plan!);
    const [full, recomputed] = plans.map((p) => planMemory(p));
    for (const m of [...full!, ...recomputed!]) expect(m.workspaceBytes).toBeGreaterThan(0);
    // One micro-batch of 2 x 1024 tokens: an MLP block keeps 2 T C + 3 T F bf16 elements and the
    // LoRA [T, r] of its three modules; the workspace is that and its gradients.
    const T = 2 * 1024;
    const mlp = (2 * T * 1024 + 3 * T * 2816 + 3 * T * 8) * 2;
    expect(full![1]!.workspaceBytes).toBe(2 * mlp);
    expect(recomputed![1]!.workspaceBytes).toBe(full![1]!.workspaceBytes);
    expect(recomputed![1]!.activationBytes).toBeLessThan(full![1]!.activationBytes);
    // The last stage adds the head's fp32 logits and their gradient.
    expect(full![3]!.workspaceBytes).toBe(2 * mlp + 2 * T * 1000 * 4);
    for (const m of full!) expect(m.totalBytes).toBe(m.weightBytes + m.adapterBytes + m.activationBytes + m.workspaceBytes);
  });

  it("every stage counts its weights: the whole model's bytes over all stages", () => {
    // bf16 weights of 8 layers + embedding + head, plus activations and adapters: more than the weights alone.
    const s = summary(job("1f1b"));
    const weights = 2 * (8 * (4 * 1024 * 1024 + 3 * 1024 * 2816 + 2 * 1024) + 2 * 1000 * 1024 + 1024);
    expect(s.stages.reduce((n, st) => n + st.memoryBytes, 0)).toBeGreaterThan(weights);
  });
});
