import { DTYPE_BYTES } from "../cost/model.js";
import { scheduleMemory, type StageMemory } from "../cost/memory.js";
import { targetModules } from "../models/llama.js";
import type { Plan } from "./schema.js";

/**
 * Each stage's peak memory, recomputed from the plan itself: a plan read from disk is trusted
 * for its schedule only after the verifier, and for its memory only after this.
 */
export function planMemory(plan: Plan): StageMemory[] {
  const modules = targetModules(plan.model.config);
  const adapters = plan.adapters.map((a) => ({
    rank: a.rank,
    seqLen: a.seqLen,
    modules: modules.filter((m) => a.targets.includes(m.name)),
    optimizer: a.optimizer,
  }));
  return scheduleMemory({
    arch: plan.model.config,
    dtypeBytes: DTYPE_BYTES[plan.model.dtype],
    recompute: plan.recompute,
    stages: plan.stages,
    adapters,
    phases: plan.schedule.phases,
  });
}
