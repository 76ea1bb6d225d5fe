import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { compile, type Summary } from "../../compiler/index.js";
import type { ResolvedAdapter } from "../../compiler/ir.js";
import { interleavedSchedule } from "../../compiler/schedules/interleave.js";
import { flushSchedule } from "../../compiler/schedules/pipeline.js";
import { simulate, type PhaseCosts } from "../../compiler/simulate/simulate.js";

/** Uniform costs: every forward tf, backward tb, free transfers and steps. */
function uniform(stages: number, mbs: number, adapters: number, tf: number, tb: number): PhaseCosts {
  return {
    forward: Array.from({ length: stages }, () => new Array<number>(mbs).fill(tf)),
    backward: Array.from({ length: stages }, () => new Array<number>(mbs).fill(tb)),
    step: Array.from({ length: stages }, () => new Array<number>(adapters).fill(0)),
    transfer: Array.from({ length: stages }, () => new Array<number>(mbs).fill(0)),
  };
}

const adapter = (index: number, m: number, steps: number) => ({ index, microBatchesPerStep: m, steps, microBatch: 1 }) as ResolvedAdapter;

describe("simulator against closed forms (equal stage costs, free communication)", () => {
  it.each([
    [2, 1],
    [4, 4],
    [4, 8],
    [8, 4],
    [3, 5],
  ])("1F1B on %i stages, %i micro-batches: makespan (m + p - 1)(tf + tb), idle (p - 1)/(m + p - 1)", (p, m) => {
    for (const interleave of ["1f1b", "gpipe"] as const) {
      const phases = flushSchedule([adapter(0, m, 10)], p, interleave, false);
      const sim = simulate(p, phases, [uniform(p, m, 1, 1, 2)]);
      expect(sim.makespanSeconds).toBeCloseTo(10 * (m + p - 1) * 3, 9);
      expect(sim.idleFraction).toBeCloseTo((p - 1) / (m + p - 1), 9);
      expect(sim.busySeconds).toEqual(new Array(p).fill(10 * m * 3));
    }
  });

  it("mlora, 4 stages, 4 adapters of 4 micro-batches, 50 steps: idle at most 0.02", () => {
    const list = [0, 1, 2, 3].map((i) => adapter(i, 4, 50));
    const phases = interleavedSchedule(list, 4);
    const sim = simulate(4, phases, phases.map((p) => uniform(4, p.microBatches.length, 4, 1, 2)));
    expect(sim.idleFraction).toBeLessThanOrEqual(0.02);
    expect(sim.makespanSeconds).toBeGreaterThanOrEqual(sim.lowerBoundSeconds);
  });

  it("adapters one after another flush every step: the same fraction", () => {
    const phases = flushSchedule([adapter(0, 4, 5), adapter(1, 4, 5), adapter(2, 4, 5)], 4, "1f1b", false);
    const sim = simulate(4, phases, [uniform(4, 12, 3, 1, 2)]);
    expect(sim.idleFraction).toBeCloseTo(3 / 7, 9);
  });

  it("the makespan is never below the lower bound (property)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 5 }),
        fc.array(fc.record({ m: fc.integer({ min: 1, max: 5 }), steps: fc.integer({ min: 1, max: 4 }) }), { minLength: 1, maxLength: 4 }),
        fc.constantFrom("1f1b", "gpipe", "batch", "mlora"),
        fc.array(fc.double({ min: 0.1, max: 3, noNaN: true }), { minLength: 4, maxLength: 4 }),
        (p, list, kind, [tf, tb, tt, ts]) => {
          const adapters = list.map((a, i) => adapter(i, a.m, a.steps));
          const phases = kind === "mlora" ? interleavedSchedule(adapters, p) : flushSchedule(adapters, p, kind === "gpipe" ? "gpipe" : "1f1b", kind === "batch");
          const costs = phases.map((ph) => {
            const c = uniform(p, ph.microBatches.length, adapters.length, tf!, tb!);
            c.transfer = c.transfer.map((row) => row.map(() => tt!));
            c.step = c.step.map((row) => row.map(() => ts!));
            return c;
          });
          const sim = simulate(p, phases, costs);
          expect(sim.makespanSeconds).toBeGreaterThanOrEqual(sim.lowerBoundSeconds * (1 - 1e-12));
          expect(sim.idleFraction).toBeGreaterThanOrEqual(-1e-12);
          expect(sim.idleFraction).toBeLessThan(1);
        },
      ),
      { numRuns: 200 },
    );
  });
});

/** 32 layers, a tiny vocabulary and NVLink: stages that cost the same, communication nearly free. */
const EQUAL_STAGES = (schedule: string, adapters: number) => `
model m { arch llama layers 32 hidden 4096 heads 32 ffn 11008 vocab 256 max_seq 512 }
${Array.from({ length: adapters }, (_, i) => `adapter a${i} { data "data/math.jsonl" rank 16 targets q_proj v_proj seq_len 512 batch 8 micro_batch 2 steps 50 }`).join("\n")}
cluster c { gpu H100 gpus 4 }
plan { schedule ${schedule} stages 4 }`;

function summary(source: string): Summary {
  const r = compile(source, { baseDir: "examples" });
  expect(r.diagnostics).toEqual([]);
  return r.summary!;
}

describe("summary.json's cost fields", () => {
  it.each([
    ["1f1b", 1],
    ["gpipe", 1],
    ["1f1b", 4],
    ["batch", 4],
  ] as const)("%s with %i adapter(s) on equal stages: idle within 0.01 of 3/7", (schedule, adapters) => {
    const s = summary(EQUAL_STAGES(schedule, adapters));
    expect(Math.abs(s.idleFraction - 3 / 7)).toBeLessThan(0.01);
    expect(s.makespanSeconds).toBeGreaterThanOrEqual(s.lowerBoundSeconds);
    expect(s.stages.every((st) => st.busySeconds > 0)).toBe(true);
  });

  it.each(["mlora", "auto"])("%s with 4 adapters on equal stages: idle at most 0.02, and auto no slower than any schedule", (schedule) => {
    const s = summary(EQUAL_STAGES(schedule, 4));
    expect(s.idleFraction).toBeLessThanOrEqual(0.02);
    for (const other of ["1f1b", "gpipe", "batch", "mlora"]) {
      expect(s.makespanSeconds).toBeLessThanOrEqual(summary(EQUAL_STAGES(other, 4)).makespanSeconds * (1 + 1e-9));
    }
  });
});
