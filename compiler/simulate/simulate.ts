import { parseActionList, type Action } from "../plan/actions.js";
import type { VerifiablePhase } from "../plan/verify-schedule.js";

/** What each action costs, in seconds, on each stage. */
export interface PhaseCosts {
  /** forward[stage][mb], backward[stage][mb] */
  forward: number[][];
  backward: number[][];
  /** step[stage][adapter]: the optimizer update of the adapter's LoRA weights on the stage. */
  step: number[][];
  /** transfer[stage][mb]: sending mb's activations (or gradients) between stage and stage + 1. */
  transfer: number[][];
}

export interface Simulation {
  makespanSeconds: number;
  busySeconds: number[];
  idleFraction: number;
  lowerBoundSeconds: number;
}

/** One action as the simulator ran it, for pictures and traces. */
export interface TimelineEvent {
  stage: number;
  op: "F" | "B" | "STEP";
  mb: number;
  adapter: number;
  start: number;
  end: number;
}

/** A message between stages as the simulator ran it: sent, arrived, taken by its receiver. */
export interface TransferEvent {
  what: "act" | "grad";
  from: number;
  to: number;
  mb: number;
  adapter: number;
  round: number;
  /** When the sender posted it, and when it arrived (send time plus the link's cost). */
  start: number;
  end: number;
  /** When the receiver's RECV completed: the arrival, or later if the receiver was busy. */
  received: number;
}

/** A stretch a stage stood idle, and what it waited for. */
export type WaitEvent = { stage: number; start: number; end: number } & (
  | { for: "act" | "grad"; mb: number; peer: number }
  /** Every stage's share of an adapter's gradient norm, before its optimizer step. */
  | { for: "norms"; adapter: number }
);

/** What one simulated stretch looked like: compute on each stage, the messages between, the waits. */
export interface Timeline {
  events: TimelineEvent[];
  transfers: TransferEvent[];
  waits: WaitEvent[];
}

interface RoundsResult {
  /** When the last stage finished each round. */
  ends: number[];
  /** Busy seconds of each stage in its first round (every round does the same work). */
  busy: number[];
}

/**
 * Runs `rounds` rounds of a phase as the engine would: each stage executes its list in order; a
 * forward or backward takes its cost; a send does not wait, its message goes on the link once
 * the link's earlier messages in that direction are through and arrives `transfer` later; a
 * receive waits for arrival; an adapter's STEP waits until every stage has finished
 * that step's backwards (their shares of the gradient norm), then takes its cost.
 */
function runRounds(stages: number, phase: VerifiablePhase, actions: readonly (readonly Action[])[], costs: PhaseCosts, rounds: number, timeline?: Timeline): RoundsResult {
  const clock = new Array<number>(stages).fill(0);
  const busy = new Array<number>(stages).fill(0);
  const ends = new Array<number>(rounds).fill(0);
  const pc = new Array<number>(stages).fill(0);
  const round = new Array<number>(stages).fill(0);
  // Messages by (channel, sender, micro-batch, round), as one number: the receiver is implied.
  let mbs = 1;
  for (const list of actions) for (const a of list) if ("mb" in a) mbs = Math.max(mbs, a.mb + 1);
  const messageKey = (what: "act" | "grad", from: number, mb: number, r: number) => ((r * mbs + mb) * stages + from) * 2 + (what === "act" ? 0 : 1);
  const arrivals = new Map<number, number>();
  // When each direction of each link (2 per link between stage l and l + 1) is free again.
  const linkFree = new Array<number>(2 * stages).fill(0);
  const sent = new Map<number, TransferEvent>();
  const parts = new Map(phase.microBatches.map((m) => [m.id, m.parts]));
  // Backwards of an adapter's step, by (adapter, step); then per (round, adapter, step), the
  // backwards each stage has finished and when its last one ended. Keys are numbers (no strings
  // in the loop): (r * adapters + adapter) * steps + step.
  let adapters = 1;
  for (const m of phase.microBatches) for (const p of m.parts) adapters = Math.max(adapters, p.adapter + 1);
  for (const list of actions) for (const a of list) if (a.op === "STEP") adapters = Math.max(adapters, a.adapter + 1);
  const steps = phase.stepsPerRound;
  const needed = new Map<number, number>();
  for (const m of phase.microBatches) for (const p of m.parts) needed.set(p.adapter * steps + p.step, (needed.get(p.adapter * steps + p.step) ?? 0) + 1);
  const shares = new Map<number, { count: number[]; at: number[] }>();
  const share = (k: number) => {
    let v = shares.get(k);
    if (!v) shares.set(k, (v = { count: new Array<number>(stages).fill(0), at: new Array<number>(stages).fill(0) }));
    return v;
  };
  // Per stage, STEPs taken by (round, adapter): r * adapters + adapter.
  const taken = Array.from({ length: stages }, () => new Map<number, number>());
  const finished = (s: number) => round[s]! >= rounds;
  for (;;) {
    let progressed = false;
    for (let s = 0; s < stages; s++) {
      while (!finished(s)) {
        const a = actions[s]![pc[s]!]!;
        const r = round[s]!;
        if (a.op === "F" || a.op === "B") {
          const cost = (a.op === "F" ? costs.forward : costs.backward)[s]![a.mb]!;
          timeline?.events.push({ stage: s, op: a.op, mb: a.mb, adapter: parts.get(a.mb)![0]!.adapter, start: clock[s]!, end: clock[s]! + cost });
          clock[s]! += cost;
          if (r === 0) busy[s]! += cost;
          if (a.op === "B") {
            for (const p of parts.get(a.mb)!) {
              const v = share((r * adapters + p.adapter) * steps + p.step);
              v.count[s]!++;
              v.at[s] = clock[s]!;
            }
          }
        } else if (a.op === "SEND") {
          const link = Math.min(s, a.peer);
          const key = messageKey(a.what, s, a.mb, r);
          // One message at a time in each direction of a link: a send queues behind the last.
          const direction = 2 * link + (a.peer > s ? 0 : 1);
          const start = Math.max(clock[s]!, linkFree[direction]!);
          const arrival = start + costs.transfer[link]![a.mb]!;
          linkFree[direction] = arrival;
          arrivals.set(key, arrival);
          if (timeline) {
            const t: TransferEvent = { what: a.what, from: s, to: a.peer, mb: a.mb, adapter: parts.get(a.mb)![0]!.adapter, round: r, start, end: arrival, received: arrival };
            timeline.transfers.push(t);
            sent.set(key, t);
          }
        } else if (a.op === "RECV") {
          const at = arrivals.get(messageKey(a.what, a.peer, a.mb, r));
          if (at === undefined) break;
          if (timeline && at > clock[s]!) timeline.waits.push({ stage: s, start: clock[s]!, end: at, for: a.what, mb: a.mb, peer: a.peer });
          clock[s] = Math.max(clock[s]!, at);
          const t = timeline && sent.get(messageKey(a.what, a.peer, a.mb, r));
          if (t) t.received = clock[s]!;
        } else if (a.op === "STEP") {
          const j = taken[s]!.get(r * adapters + a.adapter) ?? 0;
          const v = share((r * adapters + a.adapter) * steps + j);
          const need = needed.get(a.adapter * steps + j) ?? 0;
          if (!v.count.every((c) => c >= need)) break;
          const cost = costs.step[s]![a.adapter]!;
          const ready = Math.max(clock[s]!, ...v.at);
          if (timeline && ready > clock[s]!) timeline.waits.push({ stage: s, start: clock[s]!, end: ready, for: "norms", adapter: a.adapter });
          clock[s] = ready + cost;
          timeline?.events.push({ stage: s, op: "STEP", mb: -1, adapter: a.adapter, start: clock[s]! - cost, end: clock[s]! });
          if (r === 0) busy[s]! += cost;
          taken[s]!.set(r * adapters + a.adapter, j + 1);
        }
        pc[s]!++;
        if (pc[s] === actions[s]!.length) {
          ends[r] = Math.max(ends[r]!, clock[s]!);
          pc[s] = 0;
          round[s]!++;
        }
        progressed = true;
      }
    }
    if (round.every((r) => r >= rounds)) break;
    if (!progressed) throw new Error("simulate: the schedule deadlocks (the verifier should have refused it)");
  }
  return { ends, busy };
}

/**
 * Makespan, busy time per stage, idle fraction and the lower bound of a whole schedule. Rounds
 * of a phase repeat, so a phase of R rounds takes its first round's time plus R - 1 times the
 * steady-state round (the second round's increment); phases follow one another.
 */
/** The first `rounds` rounds of a phase, action by action. */
export function phaseTimeline(stages: number, phase: VerifiablePhase, costs: PhaseCosts, rounds: number): Timeline {
  const timeline: Timeline = { events: [], transfers: [], waits: [] };
  runRounds(stages, phase, phase.actions.map((list) => parseActionList(list) as readonly Action[]), costs, Math.min(rounds, phase.rounds), timeline);
  return timeline;
}

export function simulate(stages: number, phases: readonly VerifiablePhase[], costs: readonly PhaseCosts[]): Simulation {
  let makespan = 0;
  const busy = new Array<number>(stages).fill(0);
  let bound = 0;
  phases.forEach((phase, p) => {
    const actions = phase.actions.map((list) => parseActionList(list) as readonly Action[]);
    const c = costs[p]!;
    // Two rounds show the first round's time and the steady increment of every later one.
    const { ends, busy: roundBusy } = runRounds(stages, phase, actions, c, Math.min(phase.rounds, 2));
    makespan += ends[0]! + (phase.rounds - 1) * ((ends[1] ?? ends[0]!) - ends[0]!);
    roundBusy.forEach((b, s) => (busy[s]! += b * phase.rounds));
    bound += phaseLowerBound(stages, phase, c);
  });
  const total = busy.reduce((a, b) => a + b, 0);
  return {
    makespanSeconds: makespan,
    busySeconds: busy,
    idleFraction: makespan === 0 ? 0 : 1 - total / (stages * makespan),
    lowerBoundSeconds: bound,
  };
}

/** Stage s's busy seconds in one round of a phase: its forwards, backwards and optimizer steps. */
export function roundWork(phase: VerifiablePhase, c: PhaseCosts, s: number): number {
  let work = 0;
  for (const mb of phase.microBatches) work += c.forward[s]![mb.id]! + c.backward[s]![mb.id]!;
  return work + phase.stepsPerRound * phase.adapters.reduce((n, a) => n + c.step[s]![a]!, 0);
}

/**
 * The design's bound for one phase: for each stage, the least time before it can start (the
 * fastest micro-batch's forwards and transfers on the stages before it), its busy time, and the
 * least time after it must end (that micro-batch's backwards and transfers on the stages before
 * it); the largest over stages.
 */
function phaseLowerBound(stages: number, phase: VerifiablePhase, c: PhaseCosts): number {
  const ids = phase.microBatches.map((m) => m.id);
  let best = 0;
  for (let s = 0; s < stages; s++) {
    let fill = Infinity;
    let drain = Infinity;
    for (const mb of ids) {
      let f = 0;
      let d = 0;
      for (let q = 0; q < s; q++) {
        f += c.forward[q]![mb]! + c.transfer[q]![mb]!;
        d += c.backward[q]![mb]! + c.transfer[q]![mb]!;
      }
      fill = Math.min(fill, f);
      drain = Math.min(drain, d);
    }
    best = Math.max(best, (ids.length ? fill + drain : 0) + phase.rounds * roundWork(phase, c, s));
  }
  return best;
}
