import { parseAction, type Plan } from "../compiler/index.js";
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
    if (!a) throw new RunError(`plan: \`${text}\` is not an action`);
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

/**
 * The plan's phases, cut after `maxSteps` rounds (every adapter then takes at most that many
 * steps). Each adapter's step count is returned alongside.
 */
export function truncatePhases(plan: Plan, maxSteps?: number): { phases: Plan["schedule"]["phases"]; steps: number[] } {
  if (maxSteps === undefined) return { phases: plan.schedule.phases, steps: plan.adapters.map((a) => a.steps) };
  const phases: Plan["schedule"]["phases"] = [];
  let done = 0;
  for (const phase of plan.schedule.phases) {
    if (done >= maxSteps) break;
    const rounds = Math.min(phase.rounds, maxSteps - done);
    phases.push({ ...phase, rounds });
    done += rounds;
  }
  return { phases, steps: plan.adapters.map((a) => Math.min(a.steps, maxSteps)) };
}
