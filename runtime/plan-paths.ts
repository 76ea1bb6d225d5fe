import * as path from "node:path";
import { planPathProblem } from "../compiler/index.js";
import { RunError } from "./errors.js";

/**
 * A path from a plan, inside the plan's folder. readPlan has already refused any that climb out
 * or are absolute; this is the runtime's own guard, for plans handed to runPlan directly.
 */
export function resolveInPlan(planDir: string, rel: string): string {
  const problem = planPathProblem(rel);
  if (problem) throw new RunError("engineRefused", `plan: path ${JSON.stringify(rel.slice(0, 64))} ${problem}`);
  return path.resolve(planDir, rel);
}
