import * as path from "node:path";
import { hasErrors, type Diagnostic } from "../dsl/index.js";
import { runPasses } from "./driver.js";
import { nodeHost, type CompileHost } from "./host.js";
import { makeContext, type CompileOptions, type Ir } from "./ir.js";
import { scheduleSvg as scheduleSvg_ } from "./emit/schedule-svg.js";
import { reportHtml } from "./emit/report-html.js";
import { scheduleTrace, type Trace } from "./emit/trace.js";
import { buildPlan, buildSummary, comparisonRow } from "./plan/build.js";
import type { PlanLink } from "./plan/paths.js";
import type { Plan, Summary } from "./plan/schema.js";

export interface CompileRequest extends CompileOptions {
  /** The job file's path: diagnostics name it, and relative paths in the job start from its folder. */
  fileName?: string;
  /** The folder the job's paths are relative to; default: the job file's folder, else the current one. */
  baseDir?: string;
  /** The folder the plan will be written to; paths in the plan are relative to it. Default: baseDir. */
  planDir?: string;
  /** Where files are read from; default: the file system. */
  host?: CompileHost;
  /** Called with the IR after each pass (`loraflow compile --dump-ir PASS`). */
  afterPass?: (pass: string, ir: Ir) => void;
}

export interface CompileResult {
  /** Absent when there are errors. */
  plan?: Plan;
  summary?: Summary;
  /** The schedule picture (SVG), with the plan. */
  scheduleSvg?: string;
  /** The simulated schedule as Chrome/Perfetto trace events, with the plan. */
  trace?: Trace;
  /**
   * Symbolic links to make in the plan's folder, with the plan: what the job names outside the
   * folder (data, model, init, out), so that the plan's own paths stay inside it.
   */
  links?: PlanLink[];
  /** A self-contained page explaining the plan, with the plan. */
  reportHtml?: string;
  /** The schedules weighed (with `auto` or `compare`), also when the chosen one does not fit. */
  comparison?: NonNullable<Summary["comparison"]>;
  /** Errors and warnings, in source order. */
  diagnostics: Diagnostic[];
}

/**
 * Job source -> plan, summary and diagnostics. Writes nothing and prints nothing; any input,
 * however malformed, comes back as diagnostics.
 */
export function compile(source: string, request: CompileRequest = {}): CompileResult {
  const started = performance.now();
  const file = request.fileName ?? "<input>";
  const baseDir = path.resolve(request.baseDir ?? (request.fileName ? path.dirname(request.fileName) : "."));
  const planDir = path.resolve(request.planDir ?? baseDir);
  const options: CompileOptions = {};
  if (request.schedule !== undefined) options.schedule = request.schedule;
  if (request.stages !== undefined) options.stages = request.stages;
  if (request.compare !== undefined) options.compare = request.compare;
  const ctx = makeContext(request.host ?? nodeHost, file, baseDir, planDir, options);
  const ir = runPasses(source, ctx, request.afterPass);
  const diagnostics = [...ctx.diagnostics].sort((a, b) => (a.span?.start ?? 0) - (b.span?.start ?? 0));
  const comparison = ir.scheduleOptions?.map(comparisonRow);
  if (hasErrors(diagnostics) || !ir.model || !ir.adapters || !ir.stages || !ir.schedule || !ir.job) {
    return { diagnostics, ...(comparison && { comparison }) };
  }
  const jobFile = request.fileName ? path.resolve(request.fileName) : null;
  const { plan, links } = buildPlan({ ...ir, model: ir.model, adapters: ir.adapters, stages: ir.stages, schedule: ir.schedule, job: ir.job }, planDir, jobFile);
  const summary = buildSummary(plan, ir.simulation, ir.memory, Math.round((performance.now() - started) * 100) / 100, comparison);
  const scheduleSvg = ir.timeline && ir.simulation ? scheduleSvg_(plan, ir.timeline.events, ir.simulation) : undefined;
  const trace = ir.timeline ? scheduleTrace(plan, ir.timeline) : undefined;
  const report = ir.memory ? reportHtml(plan, summary, ir.memory, scheduleSvg) : undefined;
  return {
    plan,
    summary,
    links,
    diagnostics,
    ...(comparison && { comparison }),
    ...(scheduleSvg !== undefined && { scheduleSvg }),
    ...(trace !== undefined && { trace }),
    ...(report !== undefined && { reportHtml: report }),
  };
}
