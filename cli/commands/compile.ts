import * as path from "node:path";
import { compile, comparisonRows, planModule, formatDiagnostics, hasErrors, type Plan, type ScheduleName, type Summary } from "../../compiler/index.js";
import { describePlan, table } from "../print-summary.js";
import { readTextOrReport } from "../read-text.js";
import { writeFilesAtomically } from "../write-files.js";

export interface CompileFlags {
  out?: string;
  schedule?: ScheduleName;
  stages?: number | "auto";
  json?: boolean;
  compare?: boolean;
  dumpIr?: string;
}

export function defaultPlanDir(jobPath: string): string {
  return path.join("out", path.basename(jobPath).replace(/\.lf$/, ""));
}

/**
 * Compiles a job file and writes DIR/plan.json and DIR/summary.json, both or neither.
 * Prints diagnostics to stderr. Returns the plan and where it went, or undefined on failure.
 */
export function compileToDir(jobPath: string, flags: CompileFlags, print: boolean): { plan: Plan; summary: Summary; dir: string } | undefined {
  const source = readTextOrReport(jobPath);
  if (source === undefined) return undefined;
  const dir = flags.out ?? defaultPlanDir(jobPath);
  const result = compile(source, {
    fileName: jobPath,
    planDir: dir,
    ...(flags.schedule !== undefined && { schedule: flags.schedule }),
    ...(flags.stages !== undefined && { stages: flags.stages }),
    // report.html always compares the schedules; --compare also prints the table.
    compare: true,
    ...(flags.dumpIr !== undefined && {
      afterPass: (pass, ir) => {
        if (pass !== flags.dumpIr) return;
        const { source: _source, simulated: _simulated, ...rest } = ir;
        process.stdout.write(JSON.stringify(rest, null, 2) + "\n");
      },
    }),
  });
  if (result.diagnostics.length > 0) process.stderr.write(formatDiagnostics(result.diagnostics, source) + "\n");
  // The table also explains a failure to fit: which schedules would have.
  const compared = print && flags.compare ? comparisonRows(result.comparison) : undefined;
  if (compared) process.stdout.write(`schedules weighed (* chosen):\n${table(compared)}\n`);
  if (hasErrors(result.diagnostics) || !result.plan || !result.summary) {
    const errors = result.diagnostics.filter((d) => d.severity === "error").length;
    process.stderr.write(`${errors} error${errors === 1 ? "" : "s"}; nothing written\n`);
    return undefined;
  }
  try {
    writeFilesAtomically(dir, {
      "plan.json": JSON.stringify(result.plan, null, 2) + "\n",
      "summary.json": JSON.stringify(result.summary, null, 2) + "\n",
      ...(result.scheduleSvg !== undefined && { "schedule.svg": result.scheduleSvg }),
      ...(result.trace !== undefined && { "trace.json": JSON.stringify(result.trace) + "\n" }),
      ...(result.reportHtml !== undefined && { "report.html": result.reportHtml }),
      "plan.ts": planModule(result.plan, path.basename(jobPath)),
    });
  } catch (e) {
    process.stderr.write(`loraflow: cannot write ${dir}: ${(e as Error).message}\n`);
    return undefined;
  }
  if (print && flags.json) process.stdout.write(JSON.stringify(result.summary, null, 2) + "\n");
  else if (print && flags.dumpIr === undefined) {
    process.stdout.write(`${describePlan(result.plan, result.summary)}\nwrote ${path.join(dir, "plan.json")}, plan.ts, summary.json, schedule.svg, trace.json and report.html\n`);
  }
  return { plan: result.plan, summary: result.summary, dir };
}

export function compileCommand(jobPath: string, flags: CompileFlags): number {
  return compileToDir(jobPath, flags, true) ? 0 : 1;
}
