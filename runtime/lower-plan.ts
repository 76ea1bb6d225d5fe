import { formatAction, parseAction, type Plan } from "../compiler/index.js";
import { RunError } from "./errors.js";

const OP_CODES = { F: 0, B: 1, SEND: 2, RECV: 3, STEP: 4 } as const;

/**
 * A phase's actions as the engine reads them: four int32 per action (op, micro-batch,
 * channel 0 = activations / 1 = gradients, peer stage or stepped adapter).
 */
export function actionCodes(actions: string[]): Int32Array {
  const codes = new Int32Array(actions.length * 4);
  actions.forEach((text, i) => {
    const a = parseAction(text);
    if (!a) throw new RunError("engineRefused", `plan: \`${text}\` is not an action`);
    codes[4 * i] = OP_CODES[a.op];
    if (a.op === "STEP") codes[4 * i + 3] = a.adapter;
    else {
      codes[4 * i + 1] = a.mb;
      if (a.op === "SEND" || a.op === "RECV") {
        codes[4 * i + 2] = a.what === "act" ? 0 : 1;
        codes[4 * i + 3] = a.peer;
      }
    }
  });
  return codes;
}

type PlanPhase = Plan["schedule"]["phases"][number];

/**
 * The first k steps of a round: the micro-batches of later steps and their actions dropped, and
 * each stage's STEPs past the k-th; micro-batch ids renumbered densely. What remains keeps every
 * dependency of the round it came from, so it runs as the full round would have, stopping early.
 */
export function firstStepsOfRound(phase: PlanPhase, k: number): PlanPhase {
  const renumber = new Map<number, number>();
  const microBatches: PlanPhase["microBatches"] = [];
  for (const mb of phase.microBatches) {
    if (mb.parts.every((p) => p.step < k)) {
      renumber.set(mb.id, microBatches.length);
      microBatches.push({ ...mb, id: microBatches.length });
    }
  }
  const actions = phase.actions.map((list) => {
    const stepped = new Map<number, number>();
    const out: string[] = [];
    for (const text of list) {
      const a = parseAction(text);
      if (!a) throw new RunError("engineRefused", `plan: \`${text}\` is not an action`);
      if (a.op === "STEP") {
        const n = stepped.get(a.adapter) ?? 0;
        stepped.set(a.adapter, n + 1);
        if (n < k) out.push(text);
      } else if (renumber.has(a.mb)) {
        out.push(formatAction({ ...a, mb: renumber.get(a.mb)! }));
      }
    }
    return out;
  });
  return { rounds: 1, stepsPerRound: k, adapters: phase.adapters, microBatches, actions };
}

/**
 * The plan's phases, cut after `maxSteps` steps of every adapter (a round that would cross the
 * limit runs only its first steps). Each adapter's step count is returned alongside.
 */
export function truncatePhases(plan: Plan, maxSteps?: number): { phases: PlanPhase[]; steps: number[] } {
  if (maxSteps === undefined) return { phases: plan.schedule.phases, steps: plan.adapters.map((a) => a.steps) };
  const phases: PlanPhase[] = [];
  let done = 0;
  for (const phase of plan.schedule.phases) {
    const left = maxSteps - done;
    if (left <= 0) break;
    const whole = Math.min(phase.rounds, Math.floor(left / phase.stepsPerRound));
    if (whole > 0) phases.push({ ...phase, rounds: whole });
    done += whole * phase.stepsPerRound;
    if (whole < phase.rounds && maxSteps - done > 0) {
      phases.push(firstStepsOfRound(phase, Math.min(phase.stepsPerRound, maxSteps - done)));
      done = maxSteps;
    }
  }
  return { phases, steps: plan.adapters.map((a) => Math.min(a.steps, maxSteps)) };
}
