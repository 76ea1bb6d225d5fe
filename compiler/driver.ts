import type { Ir, Pass, PassContext } from "./ir.js";
import { checkJob } from "./passes/check-job.js";
import { lower } from "./passes/lower.js";
import { parse } from "./passes/parse.js";
import { partition } from "./passes/partition.js";
import { planMemory } from "./passes/plan-memory.js";
import { resolveAdapters } from "./passes/resolve-adapters.js";
import { resolveModel } from "./passes/resolve-model.js";
import { schedule } from "./passes/schedule.js";
import { simulate } from "./passes/simulate.js";
import { verify } from "./passes/verify.js";

/** The compiler, in order. Each pass is `(ir, ctx) => ir`; see the pass's file for what it does. */
export const PASSES: readonly Pass[] = [parse, checkJob, resolveModel, resolveAdapters, lower, partition, schedule, planMemory, verify, simulate];

export const PASS_NAMES = PASSES.map((p) => p.name);

/**
 * Runs every pass whose inputs exist. A pass whose input an earlier error left out is skipped,
 * so one run reports every error that can be found, not only the first pass's.
 */
export function runPasses(source: string, ctx: PassContext, afterPass?: (name: string, ir: Ir) => void): Ir {
  let ir: Ir = { source };
  for (const pass of PASSES) {
    if (pass.needs.some((field) => ir[field] === undefined)) continue;
    ir = pass.run(ir, ctx);
    afterPass?.(pass.name, ir);
  }
  return ir;
}
