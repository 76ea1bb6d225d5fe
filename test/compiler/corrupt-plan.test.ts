import * as fs from "node:fs";
import * as path from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { compile, lowerPlanPrograms, readPlan, verifySchedule, type Plan } from "../../compiler/index.js";
import type { Phase, ResolvedAdapter } from "../../compiler/ir.js";
import { planMemory } from "../../compiler/plan/memory.js";
import { interleavedSchedule } from "../../compiler/schedules/interleave.js";
import { flushSchedule } from "../../compiler/schedules/pipeline.js";
import { EXAMPLES } from "../helpers/paths.js";

const adapter = (index: number, microBatchesPerStep: number, steps: number) => ({ index, microBatchesPerStep, steps, microBatch: 1 }) as ResolvedAdapter;

const SCHEDULES: Record<string, (a: ResolvedAdapter[], p: number) => Phase[]> = {
  gpipe: (a, p) => flushSchedule(a, p, "gpipe", false),
  "1f1b": (a, p) => flushSchedule(a, p, "1f1b", false),
  batch: (a, p) => flushSchedule(a, p, "1f1b", true),
  mlora: (a, p) => interleavedSchedule(a, p),
};

const jobs = fc.record({
  stages: fc.integer({ min: 2, max: 5 }),
  adapters: fc.array(fc.record({ m: fc.integer({ min: 1, max: 5 }), steps: fc.integer({ min: 1, max: 12 }) }), { minLength: 1, maxLength: 4 }),
  schedule: fc.constantFrom(...Object.keys(SCHEDULES)),
  pick: fc.nat(),
  stage: fc.nat(),
});

function phasesOf(job: { stages: number; adapters: { m: number; steps: number }[]; schedule: string }): Phase[] {
  return structuredClone(SCHEDULES[job.schedule]!(job.adapters.map((a, i) => adapter(i, a.m, a.steps)), job.stages));
}

describe("every corrupted schedule is caught (property)", () => {
  it("a dropped receive", () => {
    fc.assert(
      fc.property(jobs, (job) => {
        const phases = phasesOf(job);
        const list = phases[0]!.actions[1 + (job.stage % (job.stages - 1))]!;
        const receives = list.flatMap((a, i) => (a.startsWith("RECV") ? [i] : []));
        list.splice(receives[job.pick % receives.length]!, 1);
        expect(verifySchedule(job.stages, job.adapters.length, phases)).not.toEqual([]);
      }),
      { numRuns: 300 },
    );
  });

  it("a dependency swapped: an action moved after the one that needs it", () => {
    fc.assert(
      fc.property(jobs, (job) => {
        const phases = phasesOf(job);
        const list = phases[0]!.actions[job.stage % job.stages]!;
        // Each forward feeds its backward; each receive feeds the compute right after it.
        const pairs = list.flatMap((a, i) => {
          if (a.startsWith("F ")) return [[i, list.indexOf(`B ${a.slice(2)}`)]];
          if (a.startsWith("RECV")) return [[i, i + 1]];
          return [];
        });
        const [from, to] = pairs[job.pick % pairs.length]!;
        const [moved] = list.splice(from!, 1);
        list.splice(to!, 0, moved!);
        expect(verifySchedule(job.stages, job.adapters.length, phases)).not.toEqual([]);
      }),
      { numRuns: 300 },
    );
  });
});

describe("a plan whose memory exceeds its device is refused on read", () => {
  const file = path.join(EXAMPLES, "tiny.lf");
  const tiny = (): Plan => compile(fs.readFileSync(file, "utf8"), { fileName: file }).plan!;

  it("for any capacity below a stage's recomputed peak, and for none at or above it (property)", () => {
    const plan = tiny();
    const peak = Math.max(...planMemory(plan).map((m) => m.totalBytes));
    fc.assert(
      fc.property(fc.integer({ min: 1, max: peak - 1 }), (capacity) => {
        const edited = structuredClone(plan);
        edited.cluster.device.memoryBytes = capacity;
        const reading = readPlan(JSON.stringify(edited));
        expect(reading.plan).toBeUndefined();
        expect(reading.diagnostics[0]!.code).toBe("LF4002");
        expect(reading.diagnostics[0]!.message).toMatch(/^stage \d needs .* \(short /);
      }),
      { numRuns: 100 },
    );
    plan.cluster.device.memoryBytes = peak;
    expect(readPlan(JSON.stringify(plan)).diagnostics).toEqual([]);
  });

  it("when its sequences are edited to stash more than fits", () => {
    const plan = tiny();
    plan.cluster.device.memoryBytes = Math.max(...planMemory(plan).map((m) => m.totalBytes)) * 1.01;
    for (const a of plan.adapters) a.seqLen = plan.model.config.maxSeq;
    // Its programs no longer run these micro-batches: refused as they are...
    expect(readPlan(JSON.stringify(plan)).diagnostics.map((d) => d.code)).toContain("LF5002");
    // ...and, lowered again for the longer sequences, refused for what they need.
    plan.programs = lowerPlanPrograms(plan);
    const reading = readPlan(JSON.stringify(plan));
    expect(reading.diagnostics.map((d) => d.code)).toContain("LF4002");
  });

  it("agrees with the compiler's own memory plan", () => {
    const source = fs.readFileSync(file, "utf8");
    const result = compile(source, { fileName: file });
    expect(planMemory(result.plan!).map((m) => m.totalBytes)).toEqual(result.summary!.stages.map((s) => s.memoryBytes));
  });
});
