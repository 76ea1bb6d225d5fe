import type { Ir, Pass, Schedule } from "../ir.js";
import { verifySchedule } from "../plan/verify-schedule.js";
import { interleavedSchedule } from "../schedules/interleave.js";
import { flushSchedule } from "../schedules/pipeline.js";
import { stageMemory } from "./plan-memory.js";
import { simulateSchedule } from "./simulate.js";

type Concrete = Schedule["name"];

function build(name: Concrete, ir: Ir): Schedule {
  const p = ir.stages!.length;
  const adapters = ir.adapters!;
  switch (name) {
    case "1f1b":
      return { name, phases: flushSchedule(adapters, p, "1f1b", false) };
    case "gpipe":
      return { name, phases: flushSchedule(adapters, p, "gpipe", false) };
    case "batch":
      return { name, phases: flushSchedule(adapters, p, "1f1b", true) };
    case "mlora":
      return { name, phases: interleavedSchedule(adapters, p) };
  }
}

/**
 * Orders every stage's work with the requested schedule. `auto` builds every schedule, keeps
 * those that verify and fit in memory, and chooses the shortest simulated makespan (ties go to
 * the earlier of mlora, batch, 1f1b, gpipe).
 */
export const schedule: Pass = {
  name: "schedule",
  needs: ["adapters", "stages", "job", "model"],
  run(ir) {
    const requested = ir.job!.plan.schedule;
    if (requested !== "auto") return { ...ir, schedule: build(requested, ir) };
    const capacity = ir.job!.cluster.device.memoryBytes;
    let best: { schedule: Schedule; makespan: number } | undefined;
    for (const name of ["mlora", "batch", "1f1b", "gpipe"] as const) {
      const candidate = build(name, ir);
      if (verifySchedule(ir.stages!.length, ir.adapters!.length, candidate.phases).length > 0) continue;
      if (stageMemory(ir, candidate).some((m) => m.totalBytes > capacity)) continue;
      const makespan = simulateSchedule(ir, candidate).makespanSeconds;
      if (!best || makespan < best.makespan * (1 - 1e-9)) best = { schedule: candidate, makespan };
    }
    // Nothing fits: 1F1B goes on, and the memory plan explains why it does not fit.
    return { ...ir, schedule: best?.schedule ?? build("1f1b", ir) };
  },
};
