import * as fs from "node:fs";
import * as path from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { compile, formatPrograms, readPlan, type Plan, type StageProgram } from "../../compiler/index.js";
import { tensorBytes } from "../../compiler/programs/allocate.js";
import { weightLayout } from "../../compiler/programs/layout.js";
import { stageProgram, stageProgramSizes } from "../../compiler/programs/lower.js";
import { planProgramProblems } from "../../compiler/programs/validate.js";
import { expectGolden } from "../helpers/golden.js";
import { EXAMPLES } from "../helpers/paths.js";

const TINY = `
model tiny { arch llama layers 2 hidden 16 heads 2 kv_heads 1 ffn 24 vocab 32 max_seq 16 dtype fp32 }
adapter a { rank 2 alpha 4 dropout 0.1 targets q_proj v_proj data "data/count.jsonl" format tokens seq_len 8 batch 2 micro_batch 1 steps 1 }
adapter b { rank 2 alpha 2 targets all data "data/count.jsonl" format tokens seq_len 8 batch 2 micro_batch 2 steps 1 }
cluster c { gpu cpu gpus 2 }
`;

function plan(source: string, extra = ""): Plan {
  const r = compile(source + extra, { baseDir: EXAMPLES });
  if (!r.plan) throw new Error(r.diagnostics.map((d) => d.message).join("\n"));
  return r.plan;
}

const setOf = (p: Plan, stage: number): StageProgram[] => p.programs.sets[p.programs.stages[stage]!.set]!;
const ops = (program: StageProgram, which: "forward" | "backward") => program[which].map((op) => op.op);

describe("stage programs", () => {
  it("print one op a line with operands, weight, place, shape and dtype", () => {
    expectGolden("programs/tiny-2-stages.txt", formatPrograms(plan(TINY, "plan { schedule 1f1b stages 2 }").programs));
  });

  it("the backward is the forward's reverse mode: an adjoint per op, no base weight gradient", () => {
    const p = plan(TINY, "plan { schedule 1f1b stages 2 }");
    p.programs.stages.forEach((stage, s) => {
      for (const program of setOf(p, s)) {
        const count = (list: string[], op: string) => list.filter((x) => x === op).length;
        const f = ops(program, "forward");
        const b = ops(program, "backward");
        expect(count(b, "attention_bwd")).toBe(count(f, "attention"));
        expect(count(b, "swiglu_bwd")).toBe(count(f, "swiglu"));
        expect(count(b, "lora_bwd")).toBe(count(f, "lora_expand"));
        if (stage.stage > 0) {
          expect(count(b, "rope_inv")).toBe(count(f, "rope"));
          expect(count(b, "linear_dx")).toBe(count(f, "linear"));
        } else {
          // The first stage's first block computes no input gradient for its q, k, v (nothing
          // needs it), nor rotates back a key gradient that no LoRA reads.
          expect(count(b, "linear_dx")).toBe(count(f, "linear") - 3);
          expect(count(b, "rope_inv")).toBeLessThanOrEqual(count(f, "rope"));
        }
        // Ops that read a base weight never write one: weights are not tensors of the program.
        for (const op of program.backward) for (const t of op.out) expect(program.tensors[t]!.place).not.toBe("stash");
      }
    });
  });

  it("recompute re-runs each block's forward in the backward and stashes only block inputs", () => {
    const full = plan(TINY, "plan { schedule 1f1b stages 2 }");
    const recomputed = plan(TINY, "plan { schedule 1f1b stages 2 recompute true }");
    for (let s = 0; s < 2; s++) {
      const a = setOf(full, s)[0]!;
      const b = setOf(recomputed, s)[0]!;
      expect(b.stashBytes).toBeLessThan(a.stashBytes);
      expect(ops(a, "backward")).not.toContain("attention");
      expect(ops(b, "backward")).toContain("attention");
      expect(ops(b, "backward")).toContain("lora_shrink");
    }
    expect(recomputed.programs.stages[0]!.activationBytes).toBeLessThan(full.programs.stages[0]!.activationBytes);
  });

  it("the sizes schedules are weighed by are the full programs' sizes", () => {
    const base = plan(TINY, "plan { schedule 1f1b stages 1 }").model.config;
    const classes = [
      { rows: 24, attentionRows: 24, parts: [{ rows: 8, rank: 2, modules: [0, 2], dropout: true }, { rows: 16, rank: 4, modules: [0, 1, 2, 3, 4, 5, 6], dropout: false }] },
      { rows: 8, attentionRows: 8, parts: [{ rows: 8, rank: 2, modules: [4, 5, 6], dropout: false }] },
    ];
    let compared = 0;
    for (const tieEmbeddings of [false, true]) {
      const arch = { ...base, layers: 12, tieEmbeddings };
      for (const recompute of [false, true]) {
        for (const b0 of [0, 1, 2, 3]) {
          for (let b1 = b0 + 7; b1 <= 24; b1 += 1) {
            for (const [embedding, head] of [[b0 === 0, false], [false, b1 === 24], [false, false]] as const) {
              for (const [k, cls] of classes.entries()) {
                const stage = { blocks: [b0, b1] as [number, number], embedding, head };
                const index = new Map(weightLayout(arch, stage, "f32").slots.map((w, i) => [w.name, i]));
                const full = stageProgram(arch, stage, cls, k, "f32", recompute, index);
                const sized = stageProgramSizes(arch, stage, cls, k, "f32", recompute, index);
                const label = `blocks ${b0}-${b1} ${embedding ? "embedding " : ""}${head ? "head " : ""}tied ${tieEmbeddings} recompute ${recompute} class ${k}`;
                expect([sized.stashBytes, sized.messageBytes, sized.workBytes], label).toEqual([full.stashBytes, full.messageBytes, full.workBytes]);
                compared++;
              }
            }
          }
        }
      }
    }
    expect(compared).toBeGreaterThan(1000);
  });

  it.each(fs.readdirSync(EXAMPLES).filter((f) => f.endsWith(".lf")))("%s: every schedule's programs pass readPlan's checks", (name) => {
    const source = fs.readFileSync(path.join(EXAMPLES, name), "utf8");
    for (const schedule of ["gpipe", "1f1b", "mlora"]) {
      const r = compile(source, { fileName: path.join(EXAMPLES, name), schedule: schedule as "mlora" });
      if (!r.plan) continue; // a schedule that does not fit
      expect(planProgramProblems(r.plan), `${name} ${schedule}`).toEqual([]);
    }
  });
});

/** A compiled plan with two stages and two shape classes, as JSON to corrupt. */
const BASE = JSON.stringify(plan(TINY, "plan { schedule mlora stages 2 }"));

const corruption = fc.record({ stage: fc.nat(), program: fc.nat(), pick: fc.nat(), other: fc.nat(), backward: fc.boolean() });

function refused(p: Plan): string[] {
  const r = readPlan(JSON.stringify(p));
  expect(r.plan, "a corrupted plan must be refused").toBeUndefined();
  expect(r.diagnostics.map((d) => d.code)).toContain("LF5002");
  return r.diagnostics.map((d) => d.message);
}

describe("readPlan refuses corrupted programs with LF5002 (property)", () => {
  it("the plan itself is accepted", () => {
    expect(readPlan(BASE).diagnostics).toEqual([]);
  });

  it("two workspace tensors live at once made to overlap", () => {
    fc.assert(
      fc.property(corruption, (c) => {
        const p = JSON.parse(BASE) as Plan;
        const set = p.programs.sets[c.stage % p.programs.sets.length]!;
        const program = set[c.program % set.length]!;
        const list = c.backward ? program.backward : program.forward;
        // Two work tensors an op touches together are live at the same time.
        const candidates = list.flatMap((op) => {
          const work = [...op.in, ...op.out, ...(op.scratch ?? [])].filter((t, i, all) => program.tensors[t]!.place === "work" && all.indexOf(t) === i);
          return work.length >= 2 ? [work] : [];
        });
        fc.pre(candidates.length > 0);
        const pair = candidates[c.pick % candidates.length]!;
        const a = program.tensors[pair[c.other % pair.length]!]!;
        const b = program.tensors[pair[(c.other + 1) % pair.length]!]!;
        fc.pre(tensorBytes(a) > 0 && tensorBytes(b) > 0);
        b.offset = a.offset;
        program.workBytes = Math.max(program.workBytes, b.offset + tensorBytes(b));
        refused(p);
      }),
      { numRuns: 60 },
    );
  });

  it("a tensor read before anything writes it", () => {
    fc.assert(
      fc.property(corruption, (c) => {
        const p = JSON.parse(BASE) as Plan;
        const set = p.programs.sets[c.stage % p.programs.sets.length]!;
        const program = set[c.program % set.length]!;
        // Drop an op whose result a later op of the same program reads.
        const list = program.forward;
        const producers = list.flatMap((op, i) => (op.out.some((t) => list.slice(i + 1).some((later) => later.in.includes(t)) && !op.in.includes(t)) ? [i] : []));
        fc.pre(producers.length > 0);
        list.splice(producers[c.pick % producers.length]!, 1);
        refused(p);
      }),
      { numRuns: 60 },
    );
  });

  it("an offset out of its arena", () => {
    fc.assert(
      fc.property(corruption, fc.integer({ min: 1, max: 1 << 20 }), (c, past) => {
        const p = JSON.parse(BASE) as Plan;
        const set = p.programs.sets[c.stage % p.programs.sets.length]!;
        const program = set[c.program % set.length]!;
        const t = program.tensors[c.pick % program.tensors.length]!;
        const room = t.place === "stash" ? program.stashBytes : t.place === "work" ? program.workBytes : program.messageBytes;
        t.offset = room - tensorBytes(t) + past;
        refused(p);
      }),
      { numRuns: 60 },
    );
  });

  it("round buffers of micro-batches in flight at once made to overlap", () => {
    fc.assert(
      fc.property(corruption, (c) => {
        const p = JSON.parse(BASE) as Plan;
        const stage = p.programs.stages[c.stage % p.programs.stages.length]!;
        const round = stage.rounds[0]!;
        const stashes = round.offsets.flatMap((o, i) => (i % 5 === 0 && o >= 0 ? [i] : []));
        const distinct = stashes.filter((i) => round.offsets[i] !== round.offsets[stashes[0]!]);
        fc.pre(stashes.length >= 2);
        // mlora keeps several micro-batches in flight on the first stage: their slots must differ.
        fc.pre(stage.stage === 0 && distinct.length > 0);
        round.offsets[distinct[c.pick % distinct.length]!] = round.offsets[stashes[0]!]!;
        const messages = refused(p);
        expect(messages.join(" ")).toMatch(/overlap/);
      }),
      { numRuns: 40 },
    );
  });
});
