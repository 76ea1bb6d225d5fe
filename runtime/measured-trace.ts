import { scheduleTrace, type Plan, type Timeline, type Trace } from "../compiler/index.js";
import type { TrainResult } from "./native.js";

/** Rounds of the first phase the engine times: as many as the compiler's predicted trace covers. */
export const TRACED_ROUNDS = 2;

const OP = ["F", "B", "SEND", "RECV", "STEP"] as const;
const CHANNEL = ["act", "grad"] as const;

/**
 * The engine's timed actions as the simulator's timeline (runtime/../compiler/simulate), so that
 * the measured trace (trace.run.json) has the predicted one's layout: a forward or backward is
 * when it ran; a RECV's wait is the stage standing idle for a message, and the message runs from
 * its SEND to the end of that wait; a STEP waits for the gradient norms, then steps.
 */
export function measuredTimeline(plan: Plan, stages: TrainResult["stages"]): Timeline {
  const phase = plan.schedule.phases[0]!;
  const adapterOf = (mb: number) => phase.microBatches.find((m) => m.id === mb)?.parts[0]?.adapter ?? 0;
  const timeline: Timeline = { events: [], transfers: [], waits: [] };
  const sends = new Map<string, number>();
  const rows = stages.map((s) => {
    const out = [];
    for (let i = 0; i + 8 <= s.trace.length; i += 8) {
      const [op, mb, channel, peer, round, start, waited, end] = Array.from(s.trace.subarray(i, i + 8)) as number[];
      out.push({ op: OP[op!]!, mb: mb!, what: CHANNEL[channel!] ?? "act", peer: peer!, round: round!, start: start!, waited: waited!, end: end! });
    }
    return out;
  });
  rows.forEach((list, stage) => {
    for (const a of list) if (a.op === "SEND") sends.set(`${a.what} ${stage} ${a.peer} ${a.mb} ${a.round}`, a.start);
  });
  rows.forEach((list, stage) => {
    for (const a of list) {
      if (a.op === "F" || a.op === "B") timeline.events.push({ stage, op: a.op, mb: a.mb, adapter: adapterOf(a.mb), start: a.start, end: a.end });
      else if (a.op === "STEP") {
        if (a.waited > a.start) timeline.waits.push({ stage, start: a.start, end: a.waited, for: "norms", adapter: a.peer });
        timeline.events.push({ stage, op: "STEP", mb: -1, adapter: a.peer, start: a.waited, end: a.end });
      } else if (a.op === "RECV") {
        if (a.waited > a.start) timeline.waits.push({ stage, start: a.start, end: a.waited, for: a.what, mb: a.mb, peer: a.peer });
        const sent = sends.get(`${a.what} ${a.peer} ${stage} ${a.mb} ${a.round}`);
        if (sent !== undefined) timeline.transfers.push({ what: a.what, from: a.peer, to: stage, mb: a.mb, adapter: adapterOf(a.mb), round: a.round, start: sent, end: Math.max(sent, a.waited), received: a.end });
      }
    }
  });
  return timeline;
}

/** trace.run.json: the measured first rounds, in the layout of the compiler's trace.json. */
export function measuredTrace(plan: Plan, stages: TrainResult["stages"]): Trace {
  return scheduleTrace(plan, measuredTimeline(plan, stages), `the first ${TRACED_ROUNDS} rounds of the first phase, as the engine ran them`);
}
