import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { lowerPlanPrograms, type Plan } from "../../compiler/index.js";
import { RunError } from "../../runtime/errors.js";
import { runPlan } from "../../runtime/run.js";
import { tempDir } from "../helpers/hf-model.js";
import { compileOrThrow, writeTokenData } from "../helpers/train-job.js";

/**
 * The engine checks what it is handed at its boundary and never hangs: plans that readPlan
 * would refuse, handed to runPlan directly, fail with LF6008 and a message, never a signal,
 * a read out of bounds (the ASan build runs this file too) or a wait that cannot end.
 */
const JOB = `
model toy { arch llama layers 2 hidden 16 heads 4 kv_heads 2 ffn 32 vocab 64 max_seq 64 dtype fp32 }
adapter a { data "a.jsonl" format tokens seq_len 8 batch 2 micro_batch 1 steps 2 }
adapter b { data "a.jsonl" format tokens seq_len 8 batch 2 micro_batch 1 steps 2 }
cluster box { gpu cpu gpus 2 }
plan { schedule 1f1b stages 2 }
`;

let dir: string;
let base: Plan;
beforeAll(() => {
  dir = tempDir("loraflow-boundary-");
  writeTokenData(path.join(dir, "a.jsonl"), 8, 64, 1);
  base = compileOrThrow(JOB, { baseDir: dir, planDir: dir });
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

async function failure(edit: (p: Plan) => void): Promise<RunError> {
  const plan = structuredClone(base);
  edit(plan);
  try {
    await runPlan(plan, dir, { save: false });
  } catch (e) {
    expect(e).toBeInstanceOf(RunError);
    return e as RunError;
  }
  throw new Error("the run succeeded");
}

describe("the engine at its boundary", () => {
  it("names a deadlock and what each stage waits for, instead of hanging", async () => {
    const e = await failure((p) => {
      // Stage 0 waits for the gradient of mb0 before it has sent anything on.
      const list = p.schedule.phases[0]!.actions[0]!;
      list.splice(list.indexOf("RECV grad mb0 from s1"), 1);
      list.unshift("RECV grad mb0 from s1");
    });
    expect(e.code).toBe("LF6008");
    expect(e.message).toMatch(/the plan deadlocked: every stage waits on another; stage 0 waits at RECV grad mb0 from s1 \(phase 0, round 0\); stage 1 waits at RECV act mb0 from s0/);
  });

  it("finds micro-batches by id: swapped in the list, they train what they name", async () => {
    const swapped = structuredClone(base);
    const m = swapped.schedule.phases[0]!.microBatches;
    [m[0], m[3]] = [m[3]!, m[0]!];
    const [a, b] = [await runPlan(base, dir, { save: false }), await runPlan(swapped, dir, { save: false })];
    expect(b.adapters.map((x) => x.sites)).toEqual(a.adapters.map((x) => x.sites));
    const e = await failure((p) => (p.schedule.phases[0]!.microBatches[1]!.id = 0));
    expect(e.message).toMatch(/micro-batch ids of phase 0 are not 0 to 3 once each/);
  });

  it.each([
    { name: "sequences past micro_batch", edit: (p: Plan) => (p.schedule.phases[0]!.microBatches[0]!.parts[0]!.sequences = 3), pattern: /takes 3 sequences of adapter a, whose micro_batch is 1/ },
    { name: "a micro-batch index past the batch", edit: (p: Plan) => (p.schedule.phases[0]!.microBatches[0]!.parts[0]!.index = 5), pattern: /is micro-batch 5 of a step of 2/ },
    { name: "a STEP of an adapter not in the phase", edit: (p: Plan) => p.schedule.phases[0]!.actions[0]!.push("STEP a7"), pattern: /STEP of adapter 7/ },
    { name: "stages that do not tile the model", edit: (p: Plan) => (p.stages[1]!.blocks = [2, 9]), pattern: /do not continue from block|cover blocks/ },
    {
      name: "a phase of STEPs and no micro-batches (programs to match)",
      edit: (p: Plan) => {
        p.schedule.phases.push({ rounds: 1, stepsPerRound: 1, adapters: [0], microBatches: [], actions: p.stages.map(() => ["STEP a0"]) });
        p.programs = lowerPlanPrograms(p);
      },
      pattern: /steps past its 2 steps/,
    },
    { name: "programs of another shape than the micro-batches", edit: (p: Plan) => (p.programs.classes[0]!.rows += 1), pattern: /match class|rows in \d+ parts runs class|parts of \d+ rows/ },
  ])("refuses $name", async ({ edit, pattern }) => {
    const e = await failure(edit);
    expect(e.code).toBe("LF6008");
    expect(e.message).toMatch(pattern);
  });
});
