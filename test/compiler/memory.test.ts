import { describe, expect, it } from "vitest";
import { compile, planMemory, type Plan, type Summary } from "../../compiler/index.js";
import { roundLayout } from "../../compiler/programs/lower.js";
import type { StageProgram } from "../../compiler/programs/types.js";
import { flushSchedule } from "../../compiler/schedules/pipeline.js";
import type { ResolvedAdapter } from "../../compiler/ir.js";

const job = (schedule: string, recompute = false) => `
model m { arch llama layers 8 hidden 1024 heads 8 ffn 2816 vocab 1000 max_seq 1024 }
adapter a { data "data/math.jsonl" rank 8 targets all seq_len 1024 batch 16 micro_batch 2 steps 5 }
cluster c { gpu A100-40G gpus 4 }
plan { schedule ${schedule} stages 4 recompute ${recompute} }`;

const compiled = (source: string): { plan: Plan; summary: Summary } => {
  const r = compile(source, { baseDir: "examples" });
  expect(r.diagnostics).toEqual([]);
  return { plan: r.plan!, summary: r.summary! };
};

const programsOf = (plan: Plan, stage: number): StageProgram[] => plan.programs.sets[plan.programs.stages[stage]!.set]!;

describe("memory plan", () => {
  it("1F1B keeps p - s micro-batches in flight on stage s; GPipe keeps all m", () => {
    const adapter = [{ index: 0, microBatchesPerStep: 8, steps: 1, microBatch: 1 } as ResolvedAdapter];
    const program = { stashBytes: 1000, messageBytes: 256 } as StageProgram;
    for (const [schedule, inFlight] of [["1f1b", (s: number) => 4 - s], ["gpipe", () => 8]] as const) {
      const phase = flushSchedule(adapter, 4, schedule, false)[0]!;
      for (let s = 0; s < 4; s++) {
        const r = roundLayout(phase, s, () => program);
        expect(r.inFlight, `${schedule} stage ${s}`).toBe(inFlight(s));
        // Equal slots of the stash (aligned to 256 bytes), then the message buffers.
        expect(r.bytes).toBeGreaterThanOrEqual(inFlight(s) * 1024);
      }
    }
  });

  it("GPipe needs more than 1F1B, and recompute less", () => {
    const onef1b = compiled(job("1f1b")).summary;
    const gpipe = compiled(job("gpipe")).summary;
    const recompute = compiled(job("1f1b", true)).summary;
    expect(gpipe.stages[0]!.memoryBytes).toBeGreaterThan(onef1b.stages[0]!.memoryBytes);
    expect(recompute.stages[0]!.memoryBytes).toBeLessThan(onef1b.stages[0]!.memoryBytes);
    for (const s of [onef1b, gpipe, recompute]) for (const st of s.stages) expect(st.memoryBytes).toBeLessThanOrEqual(st.memoryCapacityBytes);
  });

  it("the figures are the programs' arenas: stash slots and messages, then the workspace", () => {
    const [full, recomputed] = [false, true].map((recompute) => compiled(job("1f1b", recompute)).plan);
    const T = 2 * 1024;
    for (const plan of [full!, recomputed!]) {
      planMemory(plan).forEach((m, s) => {
        const stage = plan.programs.stages[s]!;
        expect(m.totalBytes).toBe(m.weightBytes + m.adapterBytes + m.activationBytes + m.workspaceBytes);
        expect(m.activationBytes).toBe(stage.roundBytes);
        expect(m.workspaceBytes).toBe(stage.workBytes);
        // One class of micro-batch: 4 - s stash slots, and [T, C] bf16 message buffers.
        const [program] = programsOf(plan, s);
        expect(m.inFlight).toBe(4 - s);
        expect(m.activationBytes).toBeGreaterThanOrEqual((4 - s) * program!.stashBytes);
        if (s > 0 && s < 3) expect(program!.messageBytes).toBe(T * 1024 * 2);
      });
    }
    // With recompute a middle stage stashes only its blocks' inputs: 4 blocks of [T, C] bf16.
    expect(programsOf(recomputed!, 1)[0]!.stashBytes).toBe(4 * T * 1024 * 2);
    expect(programsOf(full!, 1)[0]!.stashBytes).toBeGreaterThan(programsOf(recomputed!, 1)[0]!.stashBytes);
    // The head never holds a whole micro-batch's [T, V] logits: a chunk of rows at a time, in
    // fp32, and (below fp32) their gradient in the model's dtype, both in the workspace.
    const head = programsOf(full!, 3)[0]!;
    const loss = head.forward.find((op) => op.op === "head_loss")!;
    expect(loss.scratch!.map((t) => [head.tensors[t]!.shape, head.tensors[t]!.dtype])).toEqual([
      [[loss.chunk!, 1000], "f32"],
      [[loss.chunk!, 1000], "bf16"],
    ]);
    expect(head.tensors.filter((t) => t.shape.includes(1000)).map((t) => t.place)).toEqual(["work", "work"]);
  });

  it("every stage counts its weights: the whole model's bytes over all stages", () => {
    // bf16 weights of 8 layers + embedding + head, plus activations and adapters: more than the weights alone.
    const s = compiled(job("1f1b")).summary;
    const weights = 2 * (8 * (4 * 1024 * 1024 + 3 * 1024 * 2816 + 2 * 1024) + 2 * 1000 * 1024 + 1024);
    expect(s.stages.reduce((n, st) => n + st.memoryBytes, 0)).toBeGreaterThan(weights);
  });
});
