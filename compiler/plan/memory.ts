import type { StageMemory } from "../cost/memory.js";
import { programsMemory } from "../programs/memory.js";
import type { Plan } from "./schema.js";

/**
 * Each stage's arenas as the plan's programs lay them out: what the engine allocates. A plan
 * read from disk is trusted for them only after readPlan validated its programs.
 */
export function planMemory(plan: Pick<Plan, "programs">): StageMemory[] {
  return programsMemory(plan.programs);
}
