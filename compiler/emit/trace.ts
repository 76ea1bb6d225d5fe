import type { Plan } from "../plan/schema.js";
import type { Timeline } from "../simulate/simulate.js";

/**
 * The simulated schedule as Chrome trace events (chrome://tracing, ui.perfetto.dev): a process
 * per stage with a compute thread and a thread per link direction, a slice per forward,
 * backward, optimizer step and message, a slice for every wait (the bubbles, with what the
 * stage waited for), and a flow arrow from each send to the compute that
 * consumed it on the receiving stage. Times are microseconds. It covers what the schedule
 * picture covers: the first rounds of the first phase.
 */
export interface TraceEvent {
  name: string;
  ph: "X" | "M" | "s" | "f";
  pid: number;
  tid: number;
  ts?: number;
  dur?: number;
  cat?: string;
  id?: number;
  bp?: "e";
  args?: Record<string, unknown>;
}

export interface Trace {
  traceEvents: TraceEvent[];
  displayTimeUnit: "ms";
  otherData: Record<string, string>;
}

const COMPUTE = 0;
const SEND_NEXT = 1;
const SEND_PREVIOUS = 2;

const us = (seconds: number) => Math.round(seconds * 1e9) / 1e3;
/** A duration from rounded ends, so that back-to-back slices meet rather than overlap. */
const span = (start: number, end: number) => Math.round((us(end) - us(start)) * 1e3) / 1e3;

export function scheduleTrace(plan: Plan, timeline: Timeline, covers = "the first rounds of the first phase, as the simulator ran them"): Trace {
  const name = (a: number) => plan.adapters[a]?.name ?? `adapter ${a}`;
  const events: TraceEvent[] = [];
  // A thread per link direction: the simulator puts one message at a time on each.
  const linkThread = (from: number, to: number) => (to > from ? SEND_NEXT : SEND_PREVIOUS);
  plan.stages.forEach((s) => {
    const layers = `layers ${s.layers[0]}-${s.layers[1] - 1}${s.embedding ? " + embedding" : ""}${s.head ? " + head" : ""}`;
    events.push({ name: "process_name", ph: "M", pid: s.index, tid: 0, args: { name: `stage ${s.index} (device ${s.device}, ${layers})` } });
    events.push({ name: "process_sort_index", ph: "M", pid: s.index, tid: 0, args: { sort_index: s.index } });
    events.push({ name: "thread_name", ph: "M", pid: s.index, tid: COMPUTE, args: { name: "compute" } });
    if (s.index < plan.stages.length - 1) events.push({ name: "thread_name", ph: "M", pid: s.index, tid: SEND_NEXT, args: { name: `send to stage ${s.index + 1}` } });
    if (s.index > 0) events.push({ name: "thread_name", ph: "M", pid: s.index, tid: SEND_PREVIOUS, args: { name: `send to stage ${s.index - 1}` } });
  });
  for (const e of timeline.events) {
    const label = e.op === "STEP" ? `step ${name(e.adapter)}` : `${e.op === "F" ? "forward" : "backward"} mb${e.mb}`;
    events.push({
      name: label,
      cat: e.op === "F" ? "forward" : e.op === "B" ? "backward" : "step",
      ph: "X",
      pid: e.stage,
      tid: COMPUTE,
      ts: us(e.start),
      dur: span(e.start, e.end),
      args: { adapter: name(e.adapter), ...(e.mb >= 0 && { microBatch: e.mb }) },
    });
  }
  for (const w of timeline.waits) {
    // Below the trace's resolution (a nanosecond) a wait is rounding, not a bubble.
    if (span(w.start, w.end) <= 0) continue;
    const reason = w.for === "norms" ? `gradient norms of ${name(w.adapter)}` : `${w.for === "act" ? "activations" : "gradients"} mb${w.mb} from stage ${w.peer}`;
    events.push({ name: `waiting for ${reason}`, cat: "idle", ph: "X", pid: w.stage, tid: COMPUTE, ts: us(w.start), dur: span(w.start, w.end) });
  }
  // The compute that consumes a message: the receiver's first F (activations) or B (gradients)
  // of that micro-batch starting no earlier than the message was taken.
  const computes = new Map<string, Timeline["events"]>();
  for (const e of timeline.events) {
    const key = `${e.stage} ${e.op} ${e.mb}`;
    const list = computes.get(key);
    if (list) list.push(e);
    else computes.set(key, [e]);
  }
  const consumer = (stage: number, op: "F" | "B", mb: number, at: number) => computes.get(`${stage} ${op} ${mb}`)?.find((e) => e.start >= at - 1e-15);
  timeline.transfers.forEach((t, id) => {
    const tid = linkThread(t.from, t.to);
    const label = `${t.what === "act" ? "activations" : "gradients"} mb${t.mb} to stage ${t.to}`;
    events.push({
      name: label,
      cat: "transfer",
      ph: "X",
      pid: t.from,
      tid,
      ts: us(t.start),
      dur: span(t.start, t.end),
      args: { adapter: name(t.adapter), round: t.round, arrives: us(t.end), takenBy: us(t.received) },
    });
    const target = consumer(t.to, t.what === "act" ? "F" : "B", t.mb, t.received);
    if (!target) return;
    events.push({ name: label, cat: "transfer", ph: "s", id, pid: t.from, tid, ts: us(t.start) });
    events.push({ name: label, cat: "transfer", ph: "f", bp: "e", id, pid: t.to, tid: COMPUTE, ts: us(target.start) });
  });
  return {
    traceEvents: events,
    displayTimeUnit: "ms",
    otherData: {
      schedule: plan.schedule.name,
      covers,
    },
  };
}
