import type { Ir, Pass, ResolvedAdapter, Schedule, ScheduleOption, Simulated } from "../ir.js";
import { verifySchedule } from "../plan/verify-schedule.js";
import { chunk, declaredGroups, fusionOrder, fusionSizes, interleavingOrders, scheduleLabel } from "../schedules/fusion.js";
import { interleavedSchedule } from "../schedules/interleave.js";
import { flushSchedule } from "../schedules/pipeline.js";
import { roundWork, simulate as run } from "../simulate/simulate.js";
import { stageMemory } from "./plan-memory.js";
import { priceSchedule } from "./simulate.js";

type Concrete = Schedule["name"];

export function buildSchedule(name: Concrete, ir: Ir, groups?: number[][]): Schedule {
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
      return groups ? { name, groups, phases: interleavedSchedule(adapters, p, groups) } : { name, phases: interleavedSchedule(adapters, p) };
  }
}

interface Weighed {
  option: ScheduleOption;
  schedule: Schedule;
  /** The priced and simulated schedule, which the simulate pass reuses for the one chosen. */
  simulated?: Simulated;
}

/**
 * Prices, checks and simulates one candidate. `best` lets it stop early: when the busiest
 * stage's work alone takes longer than the best makespan so far, no ordering can win.
 */
function weigh(ir: Ir, schedule: Schedule, best: number, prune: boolean): Weighed {
  const capacity = ir.job!.cluster.device.memoryBytes;
  const peakBytes = Math.max(...stageMemory(ir, schedule).map((m) => m.totalBytes));
  const option: ScheduleOption = { label: scheduleLabel(schedule, ir.adapters!), name: schedule.name, peakBytes, fits: peakBytes <= capacity, chosen: false };
  if (schedule.groups) option.groups = schedule.groups;
  if (!option.fits) return { option, schedule };
  const costs = priceSchedule(ir, schedule);
  if (prune) {
    const busiest = Math.max(...ir.stages!.map((_, s) => schedule.phases.reduce((t, phase, p) => t + phase.rounds * roundWork(phase, costs[p]!, s), 0)));
    if (busiest >= best) return { option: { ...option, pruned: true }, schedule };
  }
  const simulation = run(ir.stages!.length, schedule.phases, costs);
  return { option: { ...option, makespanSeconds: simulation.makespanSeconds, idleFraction: simulation.idleFraction }, schedule, simulated: { schedule, costs, simulation } };
}

/**
 * Orders every stage's work with the requested schedule. `auto` searches: the four whole
 * schedules, then fused interleavings (adapters sharing micro-batches in groups of 2, 4, 8 ...
 * up to all, growing while the makespan improves) and, where adapters differ in size, the
 * interleaving with the heaviest micro-batches first. It keeps the fitting, verified schedule
 * of the shortest simulated makespan (ties go to the earlier candidate). Groups the job declared
 * with `fuse` are used as they are, by `mlora` and by `auto`'s mlora, and end the search over
 * others. `compare` weighs them all whatever is requested (no pruning), and the pass records
 * what it weighed for the report.
 */
export const schedule: Pass = {
  name: "schedule",
  needs: ["adapters", "stages", "job", "model"],
  run(ir, ctx) {
    const requested = ir.job!.plan.schedule;
    const compare = ctx.options.compare === true;
    const declared = declaredGroups(ir.adapters!);
    const build = (name: Concrete) => (name === "mlora" && declared ? buildSchedule(name, ir, declared) : buildSchedule(name, ir));
    if (requested !== "auto" && !compare) return { ...ir, schedule: build(requested) };
    const adapters = ir.adapters!;
    const weighed: Weighed[] = [];
    let best: Weighed | undefined;
    const consider = (candidate: Schedule, prune: boolean): Weighed => {
      const w = weigh(ir, candidate, best?.option.makespanSeconds ?? Infinity, prune && !compare);
      weighed.push(w);
      const m = w.option.makespanSeconds;
      if (m !== undefined && (!best || m < best.option.makespanSeconds! * (1 - 1e-9))) {
        if (verifySchedule(ir.stages!.length, adapters.length, candidate.phases).length === 0) best = w;
      }
      return w;
    };
    for (const name of ["mlora", "batch", "1f1b", "gpipe"] as const) consider(build(name), false);
    // Groups the job declared are kept as they are: no search over others.
    if (adapters.length > 1 && !declared) {
      for (const groups of interleavingOrders(adapters)) consider(buildSchedule("mlora", ir, groups), true);
      const order = fusionOrder(adapters);
      let previous = Infinity;
      for (const size of fusionSizes(adapters.length)) {
        const w = consider(buildSchedule("mlora", ir, chunk(order, size)), true);
        const m = w.option.makespanSeconds ?? Infinity;
        if (m >= previous && !compare) break;
        previous = Math.min(previous, m);
      }
    }
    const chosen = requested === "auto" ? best : weighed.find((w) => w.schedule.name === requested && w.schedule.groups === (requested === "mlora" ? declared : undefined));
    if (chosen) chosen.option.chosen = true;
    const scheduleOptions = weighed.map((w) => w.option);
    // Nothing fits: 1F1B goes on, and the memory plan explains why it does not fit.
    return {
      ...ir,
      scheduleOptions,
      schedule: chosen?.schedule ?? build(requested === "auto" ? "1f1b" : requested),
      ...(chosen?.simulated && { simulated: chosen.simulated }),
    };
  },
};
