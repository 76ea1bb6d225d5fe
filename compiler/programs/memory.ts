import type { StageMemory } from "../cost/memory.js";
import type { Plan } from "../plan/schema.js";
import { targetModules } from "../models/llama.js";
import type { Dtype } from "../job.js";
import { lowerPrograms, type LowerInputs } from "./lower.js";
import type { Programs } from "./types.js";

/** Each stage's arenas as the memory figures show them: what the engine allocates, exactly. */
export function programsMemory(programs: Pick<Programs, "stages">): StageMemory[] {
  return programs.stages.map((s) => ({
    weightBytes: s.weightBytes,
    adapterBytes: s.adapterBytes,
    activationBytes: s.roundBytes,
    workspaceBytes: s.workBytes,
    inFlight: s.inFlight,
    totalBytes: s.weightBytes + s.adapterBytes + s.roundBytes + s.workBytes,
  }));
}

/** What lowering reads of a plan (its own programs aside). */
export function planLowerInputs(plan: Pick<Plan, "model" | "recompute" | "stages" | "adapters" | "schedule">, dtype: Dtype = plan.model.dtype): LowerInputs {
  const modules = targetModules(plan.model.config);
  return {
    arch: plan.model.config,
    dtype,
    recompute: plan.recompute,
    stages: plan.stages,
    adapters: plan.adapters.map((a) => ({
      rank: a.rank,
      seqLen: a.seqLen,
      dropout: a.dropout,
      modules: modules.filter((m) => a.targets.includes(m.name)),
      optimizer: a.optimizer,
    })),
    phases: plan.schedule.phases,
  };
}

/** The programs the compiler makes for a plan, in its dtype or another (the CPU engine's fp32). */
export function lowerPlanPrograms(plan: Pick<Plan, "model" | "recompute" | "stages" | "adapters" | "schedule">, dtype?: Dtype): Programs {
  return lowerPrograms(planLowerInputs(plan, dtype));
}
