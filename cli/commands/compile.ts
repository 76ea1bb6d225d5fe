import * as path from "node:path";
import { compile, comparisonRows, Diagnostics, formatPlanJson, formatPrograms, planModule, formatDiagnostics, hasErrors, type Plan, type ScheduleName, type Summary } from "../../compiler/index.js";
import { describePlan, table } from "../print-summary.js";
import { readTextOrReport } from "../read-text.js";
import { CompileFolderError, writeCompileFolder } from "../../runtime/output/compile-folder.js";
import { print, printError } from "../output.js";

export interface CompileFlags {
  out?: string;
  schedule?: ScheduleName;
  stages?: number | "auto";
  json?: boolean;
  compare?: boolean;
  dumpIr?: string;
  /** `programs`: print each stage's compiled programs in their text form. */
  emit?: "programs";
}

export function defaultPlanDir(jobPath: string): string {
  return path.join("out", path.basename(jobPath).replace(/\.lf$/, ""));
}

/**
 * Compiles a job file and writes DIR/plan.json and DIR/summary.json, both or neither.
 * Prints diagnostics to stderr. Returns the plan and where it went, or undefined on failure.
 */
export function compileToDir(jobPath: string, flags: CompileFlags, verbose: boolean): { plan: Plan; summary: Summary; dir: string } | undefined {
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
        print(JSON.stringify(rest, null, 2) + "\n");
      },
    }),
  });
  if (result.diagnostics.length > 0) printError(formatDiagnostics(result.diagnostics, source) + "\n");
  // The table also explains a failure to fit: which schedules would have.
  const compared = verbose && flags.compare ? comparisonRows(result.comparison) : undefined;
  if (compared) print(`schedules weighed (* chosen):\n${table(compared)}\n`);
  if (hasErrors(result.diagnostics) || !result.plan || !result.summary) {
    const errors = result.diagnostics.filter((d) => d.severity === "error").length;
    printError(`${errors} error${errors === 1 ? "" : "s"}; nothing written\n`);
    return undefined;
  }
  try {
    writeCompileFolder(dir, {
      "plan.json": formatPlanJson(result.plan),
      "summary.json": JSON.stringify(result.summary, null, 2) + "\n",
      ...(result.scheduleSvg !== undefined && { "schedule.svg": result.scheduleSvg }),
      ...(result.trace !== undefined && { "trace.json": JSON.stringify(result.trace) + "\n" }),
      ...(result.reportHtml !== undefined && { "report.html": result.reportHtml }),
      "plan.ts": planModule(result.plan, path.basename(jobPath)),
    }, result.links ?? []);
  } catch (e) {
    const why = e instanceof CompileFolderError ? e.message : `cannot write ${dir} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`;
    printError(`loraflow: error ${Diagnostics.outputRefused.code}: ${why}; nothing written\n`);
    return undefined;
  }
  if (verbose && flags.emit === "programs") print(formatPrograms(result.plan.programs));
  if (verbose && flags.json) print(JSON.stringify(result.summary, null, 2) + "\n");
  else if (verbose && flags.dumpIr === undefined && flags.emit === undefined) {
    print(`${describePlan(result.plan, result.summary)}\nwrote ${path.join(dir, "plan.json")}, plan.ts, summary.json, schedule.svg, trace.json and report.html\n`);
  }
  return { plan: result.plan, summary: result.summary, dir };
}

export function compileCommand(jobPath: string, flags: CompileFlags): number {
  return compileToDir(jobPath, flags, true) ? 0 : 1;
}
