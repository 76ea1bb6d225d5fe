import * as path from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { formatDiagnostics, parseAction, verifySchedule } from "../../compiler/index.js";
import { parseActionList } from "../../compiler/plan/actions.js";
import { makeContext, type Ir, type Phase, type ResolvedAdapter } from "../../compiler/ir.js";
import { verify } from "../../compiler/passes/verify.js";
import { interleavedSchedule } from "../../compiler/schedules/interleave.js";
import { flushSchedule, type Interleave } from "../../compiler/schedules/pipeline.js";
import { nodeHost } from "../../compiler/host.js";
import { expectGolden } from "../helpers/golden.js";

/** Just what the schedulers read of an adapter. */
function adapter(index: number, microBatchesPerStep: number, steps: number): ResolvedAdapter {
  return { index, microBatchesPerStep, steps, microBatch: 1 } as ResolvedAdapter;
}

const KINDS: { name: string; interleave: Interleave; fused: boolean }[] = [
  { name: "gpipe", interleave: "gpipe", fused: false },
  { name: "1f1b", interleave: "1f1b", fused: false },
  { name: "batch", interleave: "1f1b", fused: true },
];

function render(phases: Phase[]): string {
  return phases
    .map((p, i) => {
      const stages = p.actions.map((list, s) => {
        const rows: string[] = [];
        for (let j = 0; j < list.length; j += 6) rows.push(`    ${list.slice(j, j + 6).join(" | ")}`);
        return [`  s${s}:`, ...rows].join("\n");
      });
      return [`phase ${i}: ${p.rounds} rounds, adapters ${p.adapters.join(" ")}`, ...stages].join("\n");
    })
    .join("\n");
}

describe("flush schedules", () => {
  it.each(KINDS)("$name on 4 stages, 2 adapters of 4 micro-batches (golden)", ({ name, interleave, fused }) => {
    const phases = flushSchedule([adapter(0, 4, 3), adapter(1, 4, 5)], 4, interleave, fused);
    expect(verifySchedule(4, 2, phases)).toEqual([]);
    expectGolden(`schedules/${name}-p4-a2-m4.txt`, render(phases));
  });

  it("mlora on 4 stages, 2 adapters of 4 micro-batches, 3 steps each (golden)", () => {
    const phases = interleavedSchedule([adapter(0, 4, 3), adapter(1, 4, 3)], 4);
    expect(verifySchedule(4, 2, phases)).toEqual([]);
    expect(phases.map((p) => [p.rounds, p.stepsPerRound])).toEqual([[1, 3]]);
    expectGolden("schedules/mlora-p4-a2-m4.txt", render(phases));
  });

  it("mlora holds one step per round when the other adapters cannot cover the pipeline's depth", () => {
    const phases = interleavedSchedule([adapter(0, 2, 6)], 4);
    expect(phases.map((p) => [p.rounds, p.stepsPerRound])).toEqual([[6, 1]]);
    expect(verifySchedule(4, 1, phases)).toEqual([]);
  });

  it("1f1b keeps at most p - s micro-batches in flight on stage s", () => {
    const [phase] = flushSchedule([adapter(0, 8, 1)], 4, "1f1b", false);
    phase!.actions.forEach((list, s) => {
      let inFlight = 0;
      let peak = 0;
      for (const a of list) {
        if (a.startsWith("F ")) peak = Math.max(peak, ++inFlight);
        if (a.startsWith("B ")) inFlight--;
      }
      expect(peak).toBe(4 - s);
    });
  });

  it("fused mlora: every grouping and order verifies and trains each adapter its steps (property)", () => {
    const job = fc
      .record({
        stages: fc.integer({ min: 1, max: 6 }),
        adapters: fc.array(fc.record({ m: fc.integer({ min: 1, max: 5 }), steps: fc.integer({ min: 1, max: 30 }) }), { minLength: 1, maxLength: 6 }),
        seed: fc.nat(),
      })
      .map(({ stages, adapters, seed }) => {
        // A permutation of the adapters cut into groups, both from the seed.
        const order = adapters.map((_, i) => i).sort((a, b) => ((a * 7919 + seed) % 13) - ((b * 7919 + seed) % 13) || a - b);
        const groups: number[][] = [];
        order.forEach((i, k) => (k === 0 || (seed >> k) % 2 === 0 ? groups.push([i]) : groups[groups.length - 1]!.push(i)));
        return { stages, adapters, groups };
      });
    fc.assert(
      fc.property(job, ({ stages, adapters, groups }) => {
        const list = adapters.map((a, i) => adapter(i, a.m, a.steps));
        const phases = interleavedSchedule(list, stages, groups);
        expect(verifySchedule(stages, list.length, phases)).toEqual([]);
        list.forEach((a) => {
          const trained = phases.filter((p) => p.adapters.includes(a.index)).reduce((n, p) => n + p.rounds * p.stepsPerRound, 0);
          expect(trained).toBe(a.steps);
        });
        for (const p of phases) for (const mb of p.microBatches) expect(new Set(mb.parts.map((x) => groups.findIndex((g) => g.includes(x.adapter)))).size).toBe(1);
      }),
      { numRuns: 300 },
    );
  });

  it("phases follow adapters as they finish", () => {
    const phases = flushSchedule([adapter(0, 2, 10), adapter(1, 2, 4), adapter(2, 1, 10)], 2, "1f1b", false);
    expect(phases.map((p) => [p.rounds, p.adapters])).toEqual([
      [4, [0, 1, 2]],
      [6, [0, 2]],
    ]);
  });

  it("every plan of every schedule verifies (property)", () => {
    const job = fc.record({
      stages: fc.integer({ min: 1, max: 6 }),
      adapters: fc.array(fc.record({ m: fc.integer({ min: 1, max: 6 }), steps: fc.integer({ min: 1, max: 40 }) }), { minLength: 1, maxLength: 5 }),
      kind: fc.constantFrom(...KINDS, { name: "mlora", interleave: "1f1b" as Interleave, fused: false }),
    });
    fc.assert(
      fc.property(job, ({ stages, adapters, kind }) => {
        const list = adapters.map((a, i) => adapter(i, a.m, a.steps));
        const phases = kind.name === "mlora" ? interleavedSchedule(list, stages) : flushSchedule(list, stages, kind.interleave, kind.fused);
        expect(verifySchedule(stages, list.length, phases)).toEqual([]);
        // The parse a schedule keeps beside its lists is what parsing their strings gives.
        for (const p of phases) for (const l of p.actions) expect(parseActionList(l)).toEqual(l.map((t) => parseAction(t)));
        const steps = phases.reduce((n, p) => n + p.rounds * p.stepsPerRound, 0);
        expect(steps).toBe(Math.max(...adapters.map((a) => a.steps)));
      }),
      { numRuns: 300 },
    );
  });
});

describe("the verifier catches corrupted plans", () => {
  it("a list changed in place after it was verified is parsed and verified again", () => {
    const phases = flushSchedule([adapter(0, 3, 2), adapter(1, 2, 2)], 3, "1f1b", false);
    expect(verifySchedule(3, 2, phases)).toEqual([]);
    const list = phases[0]!.actions[1]!;
    const i = list.indexOf("F mb0");
    list[i] = "F mb7";
    expect(verifySchedule(3, 2, phases).join("\n")).toMatch(/action \d+ `F mb7`: mb7 is not in the phase/);
    list[i] = "F mb0";
    list.push("F mb0");
    expect(verifySchedule(3, 2, phases).join("\n")).toMatch(/a second forward/);
  });

  const base = () => structuredClone(flushSchedule([adapter(0, 3, 2), adapter(1, 2, 2)], 3, "1f1b", false));
  const corrupt = (edit: (phases: Phase[]) => void) => {
    const phases = base();
    edit(phases);
    return verifySchedule(3, 2, phases);
  };
  const drop = (list: string[], action: string) => list.splice(list.indexOf(action), 1);
  const swap = (list: string[], a: string, b: string) => {
    const i = list.indexOf(a);
    const j = list.indexOf(b);
    [list[i], list[j]] = [list[j]!, list[i]!];
  };

  it.each([
    { name: "a dropped receive", edit: (p: Phase[]) => drop(p[0]!.actions[1]!, "RECV act mb1 from s0"), expect: /runs before RECV act mb1/ },
    { name: "a dropped send", edit: (p: Phase[]) => drop(p[0]!.actions[0]!, "SEND act mb0 to s1"), expect: /never sent on/ },
    { name: "backward before forward", edit: (p: Phase[]) => swap(p[0]!.actions[2]!, "F mb0", "B mb0"), expect: /runs before F mb0/ },
    { name: "a step before the last backward", edit: (p: Phase[]) => swap(p[0]!.actions[0]!, "B mb2", "STEP a0"), expect: /comes before B mb2/ },
    { name: "a second step", edit: (p: Phase[]) => p[0]!.actions[1]!.push("STEP a0"), expect: /already took its 1 step\(s\) this round/ },
    { name: "receives out of order", edit: (p: Phase[]) => swap(p[0]!.actions[2]!, "RECV act mb0 from s1", "RECV act mb1 from s1"), expect: /which sent mb0 first|runs before RECV/ },
    { name: "a receive from the wrong stage", edit: (p: Phase[]) => { const l = p[0]!.actions[2]!; l[l.indexOf("RECV act mb0 from s1")] = "RECV act mb0 from s0"; }, expect: /goes between s2 and s1/ },
    { name: "an unknown micro-batch", edit: (p: Phase[]) => p[0]!.actions[0]!.push("F mb99"), expect: /mb99 is not in the phase/ },
    { name: "garbage", edit: (p: Phase[]) => p[0]!.actions[0]!.push("JUMP s3"), expect: /is not an action/ },
    { name: "a missing stage list", edit: (p: Phase[]) => p[0]!.actions.pop(), expect: /2 action lists for 3 stages/ },
    {
      name: "a deadlock",
      edit: (p: Phase[]) => {
        // Stage 1 waits for a gradient before sending the activations that would produce it.
        const l = p[0]!.actions[1]!;
        const recv = l.indexOf("RECV grad mb0 from s2");
        l.splice(recv, 1);
        l.splice(l.indexOf("SEND act mb0 to s2"), 0, "RECV grad mb0 from s2");
      },
      expect: /deadlock|runs before/,
    },
  ])("$name", ({ edit, expect: pattern }) => {
    const problems = corrupt(edit);
    expect(problems.length).toBeGreaterThan(0);
    expect(problems.join("\n")).toMatch(pattern);
  });

  it("a deadlock between lists that are each valid alone is found by executing them", () => {
    // Stage 0 waits for mb0's gradient before sending mb1; stage 1 waits for mb1 before
    // computing mb0's gradient.
    const phase: Phase = {
      rounds: 1,
      stepsPerRound: 1,
      adapters: [0],
      microBatches: [
        { id: 0, parts: [{ adapter: 0, step: 0, index: 0, sequences: 1 }] },
        { id: 1, parts: [{ adapter: 0, step: 0, index: 1, sequences: 1 }] },
      ],
      actions: [
        ["F mb0", "SEND act mb0 to s1", "RECV grad mb0 from s1", "B mb0", "F mb1", "SEND act mb1 to s1", "RECV grad mb1 from s1", "B mb1", "STEP a0"],
        ["RECV act mb0 from s0", "F mb0", "RECV act mb1 from s0", "F mb1", "B mb0", "SEND grad mb0 to s0", "B mb1", "SEND grad mb1 to s0", "STEP a0"],
      ],
    };
    expect(verifySchedule(2, 1, [phase])).toEqual([expect.stringMatching(/^deadlock: .*stage 0, action 2 waits; .*stage 1, action 2 waits$/)]);
  });

  it("the verify pass turns problems into LF4001 (golden)", () => {
    const ctx = makeContext(nodeHost, "job.lf", "/", "/", {});
    const phases = base();
    drop(phases[0]!.actions[2]!, "B mb1");
    const ir = { source: "", stages: [{}, {}, {}], adapters: [{}, {}], schedule: { name: "1f1b", phases } } as unknown as Ir;
    const out = verify.run(ir, ctx);
    expect(out.schedule).toBeUndefined();
    expect(ctx.diagnostics.every((d) => d.code === "LF4001")).toBe(true);
    expectGolden("diagnostics/LF4001-plan-invalid.txt", formatDiagnostics(ctx.diagnostics, ""));
  });
});

describe("helpers", () => {
  it("path module is posix here (plans use forward slashes)", () => {
    expect(path.sep).toBe("/");
  });
});

describe("optimizer steps wait for the step's backwards on every stage", () => {
  it("a stage may step as soon as every stage has run the step's backwards, wherever the others' STEPs are", () => {
    // Stage 1 steps a0 before sending mb1's gradient; stage 0 has already run a0's backward.
    const phase: Phase = {
      rounds: 1,
      stepsPerRound: 1,
      adapters: [0, 1],
      microBatches: [
        { id: 0, parts: [{ adapter: 0, step: 0, index: 0, sequences: 1 }] },
        { id: 1, parts: [{ adapter: 1, step: 0, index: 0, sequences: 1 }] },
      ],
      actions: [
        ["F mb0", "SEND act mb0 to s1", "F mb1", "SEND act mb1 to s1", "RECV grad mb0 from s1", "B mb0", "RECV grad mb1 from s1", "B mb1", "STEP a0", "STEP a1"],
        ["RECV act mb0 from s0", "F mb0", "B mb0", "SEND grad mb0 to s0", "STEP a0", "RECV act mb1 from s0", "F mb1", "B mb1", "SEND grad mb1 to s0", "STEP a1"],
      ],
    };
    expect(verifySchedule(2, 2, [phase])).toEqual([]);
  });

  it("a step of a later round's data before the update is refused", () => {
    const phases = structuredClone(flushSchedule([adapter(0, 2, 2)], 2, "1f1b", false));
    phases[0]!.stepsPerRound = 2;
    phases[0]!.microBatches[1]!.parts[0]!.step = 1;
    expect(verifySchedule(2, 1, phases).join("\n")).toMatch(/runs before adapter 0's step 0 was taken here|steps 1 time/);
  });
});
