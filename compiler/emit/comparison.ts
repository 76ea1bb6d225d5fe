import { formatBytes } from "../../dsl/index.js";
import type { Summary } from "../plan/schema.js";
import { formatTime } from "./format.js";

/**
 * The schedules weighed for a job, as rows of text (a header first): what `compile --compare`
 * prints and report.html shows. Absent when nothing was weighed (a named schedule, no compare).
 */
export function comparisonRows(comparison: Summary["comparison"]): string[][] | undefined {
  if (!comparison) return undefined;
  const rows = comparison.map((r) => [
    (r.chosen ? "* " : "  ") + r.label,
    r.makespanSeconds === null ? "-" : formatTime(r.makespanSeconds),
    r.idleFraction === null ? "-" : r.idleFraction.toFixed(3),
    formatBytes(r.peakBytes),
    r.fits ? "yes" : "no",
    r.pruned ? "not simulated: its busiest stage alone is slower than the best" : !r.fits ? "exceeds device memory" : "",
  ]);
  return [["  schedule", "makespan", "idle", "peak memory", "fits", ""], ...rows];
}
