import type { Span } from "../../dsl/index.js";
import { DTYPE_BYTES } from "../cost/model.js";
import { scheduleMemory, shortfall, type StageMemory } from "../cost/memory.js";
import type { Ir, Pass, Schedule } from "../ir.js";

const ORIGIN: Span = { start: 0, end: 0, line: 1, col: 1 };

/** Each stage's peak memory under `schedule`. */
export function stageMemory(ir: Ir, schedule: Schedule): StageMemory[] {
  const { model, adapters, stages, job } = ir as Required<Ir>;
  return scheduleMemory({ arch: model.arch, dtypeBytes: DTYPE_BYTES[model.dtype], recompute: job.plan.recompute, stages, adapters, phases: schedule.phases });
}

/**
 * The memory plan: each stage's peak (base weights, adapter state, stashed activations of the
 * micro-batches its schedule keeps in flight) against its device's capacity. A plan that does
 * not fit is refused, naming the stage, the shortfall and what would make it fit.
 */
export const planMemory: Pass = {
  name: "plan-memory",
  needs: ["schedule", "stages", "adapters", "model", "job"],
  run(ir, ctx) {
    const { job } = ir as Required<typeof ir>;
    const capacity = job.cluster.device.memoryBytes;
    const memory = stageMemory(ir, ir.schedule!);
    const at = job.plan.spans["stages"] ?? job.plan.span ?? (job.cluster.span.end > 0 ? job.cluster.span : ORIGIN);
    let fits = true;
    memory.forEach((m, s) => {
      if (m.totalBytes <= capacity) return;
      fits = false;
      ctx.report("doesNotFit", shortfall(s, m, capacity, job.cluster.device.name, job.plan.recompute), at);
    });
    return fits ? { ...ir, memory } : { ...ir, memory, schedule: undefined };
  },
};
