import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { compile, type TraceEvent } from "../../compiler/index.js";
import { EXAMPLES } from "../helpers/paths.js";

const compileExample = (name: string, schedule: "1f1b" | "mlora" | "batch") => {
  const file = path.join(EXAMPLES, name);
  return compile(fs.readFileSync(file, "utf8"), { fileName: file, schedule });
};

describe("trace.json", () => {
  it.each(["1f1b", "mlora", "batch"] as const)("%s: a process per stage, compute and link threads, every send flows to the compute that consumes it", (schedule) => {
    const r = compileExample("llama2-7b-4xa6000.lf", schedule);
    const events = r.trace!.traceEvents;
    // Round-trips through JSON unchanged (what chrome://tracing and Perfetto load).
    expect(JSON.parse(JSON.stringify(r.trace))).toEqual(r.trace);
    const names = events.filter((e) => e.name === "process_name").map((e) => e.args!.name);
    expect(names).toEqual([0, 1, 2, 3].map((s) => expect.stringMatching(new RegExp(`^stage ${s} \\(device ${s}, layers `))));
    const threads = new Set(events.filter((e) => e.name === "thread_name").map((e) => `${e.pid}/${e.args!.name}`));
    for (const s of [0, 1, 2, 3]) expect(threads.has(`${s}/compute`)).toBe(true);
    expect(threads.has("0/send to stage 1")).toBe(true);
    expect(threads.has("3/send to stage 2")).toBe(true);

    const slices = events.filter((e) => e.ph === "X");
    // Slices on one thread never overlap, so viewers nest them properly.
    const byThread = new Map<string, TraceEvent[]>();
    for (const e of slices) byThread.set(`${e.pid}/${e.tid}`, [...(byThread.get(`${e.pid}/${e.tid}`) ?? []), e]);
    for (const [thread, list] of byThread) {
      list.sort((a, b) => a.ts! - b.ts!);
      for (let i = 1; i < list.length; i++) expect(list[i]!.ts!, thread).toBeGreaterThanOrEqual(list[i - 1]!.ts! + list[i - 1]!.dur! - 0.01);
    }
    // Each compute slice the picture shows is here; the first rounds' forwards and backwards.
    const phase = r.plan!.schedule.phases[0]!;
    const computes = slices.filter((e) => e.cat === "forward" || e.cat === "backward");
    expect(computes).toHaveLength(phase.microBatches.length * 2 * 4 * Math.min(2, phase.rounds));
    // Waits are slices too, on the compute thread, saying what the stage waited for; the
    // no-overlap check above keeps them between the computes.
    const waits = slices.filter((e) => e.cat === "idle");
    for (const w of waits) expect(w.name).toMatch(/^waiting for (activations mb\d+ from stage \d|gradients mb\d+ from stage \d|gradient norms of (math|code|chat|summarize))$/);
    if (schedule === "1f1b") expect(waits.some((w) => w.pid === 3 && w.name.startsWith("waiting for activations"))).toBe(true);
    // Every transfer has a flow start on its sender and a flow end bound to a compute slice of the receiver.
    const transfers = slices.filter((e) => e.cat === "transfer");
    expect(transfers.length).toBe(phase.microBatches.length * 2 * 3 * Math.min(2, phase.rounds));
    const starts = events.filter((e) => e.ph === "s");
    const ends = new Map(events.filter((e) => e.ph === "f").map((e) => [e.id, e]));
    expect(starts).toHaveLength(transfers.length);
    for (const s of starts) {
      const f = ends.get(s.id)!;
      expect(f.bp).toBe("e");
      expect(Math.abs(f.pid - s.pid)).toBe(1);
      expect(f.ts!).toBeGreaterThanOrEqual(s.ts!);
      const consumer = computes.find((c) => c.pid === f.pid && c.ts === f.ts);
      expect(consumer, `flow ${s.name}`).toBeDefined();
      expect(consumer!.name).toBe(`${s.name.startsWith("activations") ? "forward" : "backward"} ${s.name.match(/mb\d+/)![0]}`);
    }
  });
});
