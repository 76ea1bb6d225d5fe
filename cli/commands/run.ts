import * as fs from "node:fs";
import * as path from "node:path";
import { formatDiagnostics, readPlan, type Plan } from "../../compiler/index.js";
import { formatBytes } from "../../dsl/index.js";
import { RunError } from "../../runtime/errors.js";
import { loadNative } from "../../runtime/native.js";
import { runPlan } from "../../runtime/run.js";
import { print, printError } from "../output.js";
import { readTextOrReport } from "../read-text.js";
import { compileToDir } from "./compile.js";

export interface RunFlags {
  backend: string;
  maxSteps?: number;
  threads?: number;
  out?: string;
}

function loadPlanDir(dir: string): Plan | undefined {
  const file = path.join(dir, "plan.json");
  const text = readTextOrReport(file);
  if (text === undefined) return undefined;
  const reading = readPlan(text, file);
  if (!reading.plan) {
    printError(formatDiagnostics(reading.diagnostics) + "\n");
    return undefined;
  }
  return reading.plan;
}

const shown = (p: string) => path.relative(process.cwd(), p) || ".";

/** `loraflow run JOB.lf|PLAN_DIR`: compiles first when given a job, then trains and saves. */
export async function runCommand(target: string, flags: RunFlags): Promise<number> {
  if (flags.backend === "cuda") {
    const { devices, problem } = loadNative().probeCuda();
    printError(
      devices.length === 0
        ? `loraflow: --backend cuda: ${problem}; use --backend cpu\n`
        : `loraflow: --backend cuda: training on ${devices[0]} is not finished in this version (the kernels are built; the program executor is not yet); use --backend cpu\n`,
    );
    return 1;
  }
  let plan: Plan | undefined;
  let dir: string;
  if (fs.existsSync(target) && fs.statSync(target).isDirectory()) {
    dir = target;
    plan = loadPlanDir(dir);
  } else {
    const compiled = compileToDir(target, flags.out === undefined ? {} : { out: flags.out }, false);
    plan = compiled?.plan;
    dir = compiled?.dir ?? "";
  }
  if (!plan) return 1;
  const width = Math.max(...plan.adapters.map((a) => a.name.length));
  print(`training ${plan.adapters.length} adapter${plan.adapters.length === 1 ? "" : "s"} on ${plan.stages.length} CPU stage worker${plan.stages.length === 1 ? "" : "s"} (${plan.schedule.name})\n`);
  try {
    const result = await runPlan(plan, dir, {
      ...(flags.maxSteps !== undefined && { maxSteps: flags.maxSteps }),
      ...(flags.threads !== undefined && { threads: flags.threads }),
      onStep: (s) => {
        print(
          `  ${s.adapter.padEnd(width)}  step ${String(s.step).padStart(String(s.steps).length)}/${s.steps}  loss ${s.loss.toFixed(4)}  lr ${s.lr.toExponential(2)}  grad norm ${s.gradNorm.toFixed(3)}\n`,
        );
      },
      onCheckpoint: (adapter, step, at) => print(`  ${adapter.padEnd(width)}  checkpoint ${step} in ${shown(at)} (it joins the out folder when the run ends)\n`),
      onWarning: (w) => printError(`loraflow: warning ${w.code}: ${w.message}\n`),
    });
    print(`${result.tokens} tokens in ${result.seconds.toFixed(2)} s (${Math.round(result.tokens / result.seconds)} tokens/s)\n`);
    result.stages.forEach((s, i) => {
      const total = s.busySeconds + s.waitSeconds;
      print(
        `  stage ${i}: busy ${s.busySeconds.toFixed(2)} s, waiting ${s.waitSeconds.toFixed(2)} s (${total > 0 ? ((100 * s.waitSeconds) / total).toFixed(0) : 0}%), ` +
          `weights ${formatBytes(s.weightBytes)}, adapters ${formatBytes(s.adapterBytes)}, activations ${formatBytes(s.activationBytes)}\n`,
      );
    });
    for (const a of result.adapters) print(`wrote ${shown(a.out)} (${a.steps} steps, last loss ${a.loss.toFixed(4)})\n`);
    return 0;
  } catch (e) {
    if (e instanceof RunError) {
      printError(`loraflow: error ${e.code}: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
}
