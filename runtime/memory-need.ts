import * as os from "node:os";
import { lowerPlanPrograms, programsMemory, type Plan } from "../compiler/index.js";
import { formatBytes } from "../dsl/index.js";
import { RunError } from "./errors.js";

/**
 * The programs the CPU engine runs, which computes in fp32: the plan's own (readPlan validated
 * them) when they are fp32 and the phases are the plan's; else the same lowering in fp32 over
 * the phases that will run.
 */
export function cpuPrograms(plan: Plan, phases: Plan["schedule"]["phases"] = plan.schedule.phases): Plan["programs"] {
  if (plan.programs.dtype === "f32" && phases === plan.schedule.phases) return plan.programs;
  return lowerPlanPrograms({ ...plan, schedule: { ...plan.schedule, phases } }, "fp32");
}

/**
 * What a CPU run will hold at its peak, from the plan alone, so that it is refused before
 * anything large is allocated: the base weights in fp32 three times over while they are handed
 * to the engine (JavaScript's copy, the binding's, the stage arenas), each stage's adapter state
 * and activation arenas as its programs lay them out in fp32, the LoRA weights JavaScript holds,
 * and the tokenised data (four [sequences, seq_len] int32 arrays and the step order, on both
 * sides of the binding).
 */
export function runMemoryNeed(plan: Plan): number {
  const stages = programsMemory(cpuPrograms(plan));
  let bytes = 3 * plan.model.parameters * 4;
  for (const s of stages) bytes += s.adapterBytes + s.activationBytes + s.workspaceBytes;
  for (const a of plan.adapters) {
    const sequences = Math.max(a.data.examples, a.batch);
    bytes += 2 * (4 * sequences * a.seqLen * 4 + a.steps * a.batch * 4 + a.steps * 8);
  }
  // The LoRA weights on the JavaScript side: A and B of every site, once.
  for (const s of stages) bytes += s.adapterBytes / 2;
  return bytes;
}

/** The CPU engine holds everything in fp32: refuse early, and say so, when it cannot fit. */
export function checkMemory(plan: Plan): void {
  const need = runMemoryNeed(plan);
  const free = os.freemem();
  if (!(need <= 0.8 * free)) {
    const weights = plan.model.parameters * 4;
    throw new RunError(
      "tooLarge",
      `model ${plan.model.name} has ${(plan.model.parameters / 1e9).toFixed(2)}B parameters: ${(weights / 1e9).toFixed(1)} GB in fp32 on the CPU; ` +
        `the run needs about ${formatBytes(need)} in all, and this machine has ${(free / 1e9).toFixed(1)} GB free`,
    );
  }
}
