import * as fs from "node:fs";
import * as path from "node:path";
import { formatDiagnostics, readPlan, SummarySchema, type Plan } from "../../compiler/index.js";
import { formatBytes } from "../../dsl/index.js";
import { RunError } from "../../runtime/errors.js";
import { loadNative } from "../../runtime/native.js";
import { writeEngineRun } from "../../runtime/engine-run.js";
import { runPlan } from "../../runtime/run.js";
import { print, printError } from "../output.js";
import { Progress } from "../progress.js";
import { readTextOrReport } from "../read-text.js";
import { compileToDir } from "./compile.js";

export interface RunFlags {
  backend: string;
  resume?: boolean;
  engineRun?: string;
  maxSteps?: number;
  threads?: number;
  out?: string;
}

/** A plan folder's plan.json, read and checked; undefined after printing why not. */
export function loadPlanDir(dir: string): Plan | undefined {
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

type Backend = "cpu" | "cuda" | "cuda-emulated";

/**
 * What trains the plan: `--backend cpu` the CPU engine; `cuda` this machine's GPUs (refused,
 * saying why, without a driver, a GPU the plan places a stage on, cuBLASLt, or NCCL where
 * stages are on more than one GPU); `cuda-emulated` the same on emulated GPUs (the CI's
 * stand-in, with the project's fake libraries); `auto` (the default) CUDA where it can run a
 * plan compiled for GPUs, the CPU engine otherwise, saying why.
 */
function chooseBackend(flag: string, plan: Plan): { backend: Backend; note?: string } | { problem: string } {
  if (flag === "cpu") return { backend: "cpu" };
  if (flag === "auto" && plan.cluster.device.name === "cpu") return { backend: "cpu" };
  const native = loadNative();
  const probe = native.probeCuda();
  const gpus = new Set(plan.stages.map((s) => s.device));
  const problem = (() => {
    if (flag !== "cuda-emulated") {
      if (probe.devices.length === 0) return probe.problem;
      const missing = [...gpus].filter((d) => d >= probe.devices.length);
      if (missing.length > 0) return `the plan puts stages on GPU ${missing.join(", ")}, and this machine has ${probe.devices.length} (${probe.devices.join("; ")}): compile it for ${probe.devices.length} (\`cluster ... gpus ${probe.devices.length}\`)`;
    }
    if (probe.libraries.cublasLt.problem !== undefined) return probe.libraries.cublasLt.problem;
    if (gpus.size > 1 && probe.libraries.nccl.problem !== undefined) return `stages on ${gpus.size} GPUs talk through NCCL: ${probe.libraries.nccl.problem}`;
    return undefined;
  })();
  if (problem === undefined) return { backend: flag === "cuda-emulated" ? "cuda-emulated" : "cuda" };
  if (flag === "auto") return { backend: "cpu", note: `training on the CPU engine: the CUDA backend cannot run here (${problem})` };
  return { problem: `--backend ${flag}: ${problem}` };
}

/** Each stage's idle fraction as the compiler's simulation predicts it (summary.json beside the plan), if there. */
function predictedIdle(dir: string): number[] | undefined {
  try {
    const summary = SummarySchema.parse(JSON.parse(fs.readFileSync(path.join(dir, "summary.json"), "utf8")));
    if (!(summary.makespanSeconds > 0)) return undefined;
    return summary.stages.map((s) => 1 - s.busySeconds / summary.makespanSeconds);
  } catch {
    return undefined;
  }
}

/** A RunError is printed with its code (exit status 1); anything else is a bug, and propagates. */
function exitWith(e: unknown): number {
  if (!(e instanceof RunError)) throw e;
  printError(`loraflow: error ${e.code}: ${e.message}\n`);
  return 1;
}

/** `run --engine-run FILE`: everything the run would train, written for the standalone driver instead. */
function writeRunFileCommand(plan: Plan, dir: string, flags: RunFlags): number {
  const file = flags.engineRun!;
  try {
    const bytes = writeEngineRun(plan, dir, file, {
      ...(flags.backend !== "auto" && { backend: flags.backend as Backend }),
      ...(flags.maxSteps !== undefined && { maxSteps: flags.maxSteps }),
      onWarning: (w) => printError(`loraflow: warning ${w.code}: ${w.message}\n`),
    });
    print(`wrote ${shown(file)} (${formatBytes(bytes)}): train it with build/loraflow_engine_run ${shown(file)}\n`);
    return 0;
  } catch (e) {
    return exitWith(e);
  }
}

/** `loraflow run JOB.lf|PLAN_DIR`: compiles first when given a job, then trains and saves. */
export async function runCommand(target: string, flags: RunFlags): Promise<number> {
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
  if (flags.engineRun !== undefined) return writeRunFileCommand(plan, dir, flags);
  const chosen = chooseBackend(flags.backend, plan);
  if ("problem" in chosen) return exitWith(new RunError("backendUnavailable", chosen.problem));
  if (chosen.note !== undefined) printError(`loraflow: note: ${chosen.note}\n`);
  const width = Math.max(...plan.adapters.map((a) => a.name.length));
  const adapters = `${plan.adapters.length} adapter${plan.adapters.length === 1 ? "" : "s"}`;
  const stages = `${plan.stages.length} stage${plan.stages.length === 1 ? "" : "s"}`;
  if (chosen.backend === "cpu") print(`training ${adapters} on ${plan.stages.length} CPU stage worker${plan.stages.length === 1 ? "" : "s"} (${plan.schedule.name})\n`);
  else {
    const gpus = [...new Set(plan.stages.map((s) => s.device))];
    const where = chosen.backend === "cuda" ? `GPU${gpus.length === 1 ? "" : "s"} ${gpus.join(", ")}` : `${gpus.length} emulated GPU${gpus.length === 1 ? "" : "s"}`;
    print(`training ${adapters} in ${plan.model.dtype} on ${stages} over ${where} (${plan.schedule.name})\n`);
  }
  // Ctrl-C or SIGTERM: finish the round in flight, save the run's state, exit 130 (143). Again: exit at once.
  const stop = new AbortController();
  let signal: NodeJS.Signals | undefined;
  const onSignal = (s: NodeJS.Signals) => {
    const code = s === "SIGINT" ? 130 : 143;
    if (signal !== undefined) {
      printError(`loraflow: ${s} again: exiting now; the last complete checkpoint stands\n`);
      process.exit(code);
    }
    signal = s;
    printError(`loraflow: ${s}: finishing the round in flight, then saving the run's state (${s === "SIGINT" ? "Ctrl-C" : s} again exits at once)\n`);
    stop.abort();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  const progress = new Progress(plan.adapters.map((a) => a.name));
  try {
    if (flags.resume) print(`resuming from ${shown(path.join(dir, "resume"))}\n`);
    const result = await runPlan(plan, dir, {
      backend: chosen.backend,
      stop: stop.signal,
      ...(flags.resume && { resume: true }),
      ...(flags.maxSteps !== undefined && { maxSteps: flags.maxSteps }),
      ...(flags.threads !== undefined && { threads: flags.threads }),
      onStep: (s) => progress.step(s),
      onCheckpoint: (adapter, step, at) => progress.message(`  ${adapter.padEnd(width)}  checkpoint ${step} in ${shown(at)} (it joins the out folder when the run ends)\n`),
      onEval: (e) => progress.message(`  ${e.adapter.padEnd(width)}  held-out loss after step ${e.step}: ${e.loss.toFixed(4)} over ${e.tokens} tokens\n`),
      onSaved: (s) => progress.message(`  run state after round ${s.roundsDone}/${s.totalRounds} in ${shown(s.dir)}\n`),
      onWarning: (w) => printError(`loraflow: warning ${w.code}: ${w.message}\n`),
    });
    progress.done();
    if (result.resumedFrom) print(`resumed after round ${result.resumedFrom.roundsDone} (${shown(result.resumedFrom.dir)})\n`);
    if (result.stopped) {
      const { roundsDone, totalRounds, state } = result.stopped;
      if (state === undefined) printError(`loraflow: stopped after round ${roundsDone} of ${totalRounds}; its state could not be written (above): a resumed run starts from the last one saved\n`);
      else printError(`loraflow: stopped after round ${roundsDone} of ${totalRounds}; the run's state is in ${shown(state)}: \`loraflow run ${shown(dir)} --resume\` continues\n`);
      return signal === "SIGTERM" ? 143 : 130;
    }
    print(`${result.tokens} tokens in ${result.seconds.toFixed(2)} s (${Math.round(result.tokens / result.seconds)} tokens/s)\n`);
    const predicted = predictedIdle(dir);
    result.stages.forEach((s, i) => {
      const total = s.busySeconds + s.waitSeconds;
      const p = predicted?.[i];
      print(
        `  stage ${i}: busy ${s.busySeconds.toFixed(2)} s, waiting ${s.waitSeconds.toFixed(2)} s (${total > 0 ? ((100 * s.waitSeconds) / total).toFixed(0) : 0}% idle` +
          `${p === undefined ? "" : `; the plan predicts ${(100 * p).toFixed(0)}%`}), ` +
          `weights ${formatBytes(s.weightBytes)}, adapters ${formatBytes(s.adapterBytes)}, activations ${formatBytes(s.activationBytes)}\n`,
      );
    });
    if (result.trace !== undefined) print(`wrote ${shown(result.trace)}: the first rounds as they ran, beside the plan's trace.json\n`);
    for (const a of result.adapters) print(`wrote ${shown(a.out)} (${a.steps} steps, last loss ${Number.isNaN(a.loss) ? "-" : a.loss.toFixed(4)})\n`);
    return 0;
  } catch (e) {
    return exitWith(e);
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}
