import type { Span } from "../../dsl/index.js";
import { shortfall, type StageMemory } from "../cost/memory.js";
import { lowerPrograms } from "../programs/lower.js";
import { programsMemory } from "../programs/memory.js";
import type { Ir, Pass, Schedule } from "../ir.js";
import type { Programs } from "../programs/types.js";

const ORIGIN: Span = { start: 0, end: 0, line: 1, col: 1 };

/** The stage programs of `schedule` (with `sizesOnly`, their sizes alone). */
export function schedulePrograms(ir: Ir, schedule: Schedule, sizesOnly = false): Programs {
  const { model, adapters, stages, job } = ir as Required<Ir>;
  return lowerPrograms({ arch: model.arch, dtype: model.dtype, recompute: job.plan.recompute, stages, adapters, phases: schedule.phases }, { sizesOnly });
}

/** Each stage's arenas under `schedule` as its programs will lay them out, from their sizes (weighing schedules). */
export function stageMemory(ir: Ir, schedule: Schedule): StageMemory[] {
  return programsMemory(schedulePrograms(ir, schedule, true));
}

/**
 * The memory plan: each stage's arenas (base weights, adapter state, and the activations its
 * programs lay out over a round of its schedule) against its device's capacity. A plan that does
 * not fit is refused, naming the stage, the shortfall and what would make it fit.
 */
export const planMemory: Pass = {
  name: "plan-memory",
  needs: ["schedule", "stages", "adapters", "model", "job"],
  run(ir, ctx) {
    const { job } = ir as Required<typeof ir>;
    const capacity = job.cluster.device.memoryBytes;
    const programs = schedulePrograms(ir, ir.schedule!);
    const memory = programsMemory(programs);
    const at = job.plan.spans["stages"] ?? job.plan.span ?? (job.cluster.span.end > 0 ? job.cluster.span : ORIGIN);
    let fits = true;
    memory.forEach((m, s) => {
      if (m.totalBytes <= capacity) return;
      fits = false;
      ctx.report("doesNotFit", shortfall(s, m, capacity, job.cluster.device.name, job.plan.recompute), at);
    });
    return fits ? { ...ir, memory, programs } : { ...ir, memory, schedule: undefined };
  },
};
