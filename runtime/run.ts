import * as fs from "node:fs";
import { lowerPlanPrograms, type Plan } from "../compiler/index.js";
import { buildSequences, stepOrder } from "./data/sequences.js";
import * as path from "node:path";
import type { SiteMoments } from "./checkpoint/optimizer-state.js";
import { checkpointFiles, readResumeState, runIdentity, writeResumeState, type ResumeState } from "./checkpoint/resume-state.js";
import { adapterDataFile, adapterDataset, planTokenizer } from "./data/adapter-data.js";
import type { Example } from "./data/examples.js";
import { examplesLoss } from "./eval.js";
import { measuredTrace, TRACED_ROUNDS } from "./measured-trace.js";
import { writeFileDurably } from "./output/atomic.js";
import { RunError } from "./errors.js";
import { actionCodes, truncatePhases } from "./lower-plan.js";
import { checkMemory, cpuPrograms } from "./memory-need.js";
import { loadNative, type TrainResult } from "./native.js";
import { AdapterOutput } from "./output/adapter-output.js";
import { resolveInPlan } from "./plan-paths.js";
import { loadBaseWeights } from "./weights/base-weights.js";
import { encodeAdapter, initLora, loadLora, type LoraSites } from "./weights/lora.js";

export interface StepReport {
  adapter: string;
  step: number;
  steps: number;
  loss: number;
  lr: number;
  gradNorm: number;
  /** Counted tokens of the step (the loss's denominator). */
  tokens: number;
  /** Tokens the step trained on, counted or not (batch x seq_len). */
  rows: number;
  /** Seconds since training started. */
  seconds: number;
  /** By stage: busy and waiting seconds so far. */
  stages: { busy: number; wait: number }[];
}

/** Something the run reports and goes on from: a code from the catalog and a message. */
export interface RunNotice {
  code: string;
  message: string;
}

export interface RunOptions {
  /** Stop every adapter after this many optimizer steps. */
  maxSteps?: number;
  /** BLAS threads per stage worker (OpenBLAS builds only). */
  threads?: number;
  onStep?: (report: StepReport) => void;
  /** The held-out examples' mean loss (eval_split), every eval_every steps and after the last. */
  onEval?: (report: { adapter: string; step: number; loss: number; tokens: number }) => void;
  /** A checkpoint was written (its folder, which moves into the out folder when the run ends). */
  onCheckpoint?: (adapter: string, step: number, dir: string) => void;
  /** The run's state was written after a round: what `resume` continues from. */
  onSaved?: (state: { dir: string; roundsDone: number; totalRounds: number }) => void;
  /** Continue from the latest state the plan's folder holds (PLAN_DIR/resume), to the same bits as a run never stopped. */
  resume?: boolean;
  /** Aborted: the run finishes the round in flight, saves its state and resolves with `stopped`. */
  stop?: AbortSignal;
  /** Warnings: examples cut to seq_len, leftovers of a stopped run put right, a checkpoint that failed. */
  onWarning?: (notice: RunNotice) => void;
  /** Write the trained adapters (default true). */
  save?: boolean;
  /**
   * What trains: the CPU engine (default), the CUDA backend on this machine's GPUs, or the same
   * on emulated GPUs (the project's fake cuBLASLt and NCCL, which LORAFLOW_CUBLASLT and
   * LORAFLOW_NCCL name): the CI's stand-in for GPUs.
   */
  backend?: "cpu" | "cuda" | "cuda-emulated";
  /** The GPU of each stage (default: the plan's `stages[s].device`). */
  devices?: number[];
}

export interface RunResult {
  adapters: { name: string; out: string; steps: number; loss: number; sites: LoraSites }[];
  /** Where a stopped run's state is (undefined when it could not be written), after how many of its rounds. */
  stopped?: { roundsDone: number; totalRounds: number; state: string | undefined };
  /** The state a resumed run started from. */
  resumedFrom?: { dir: string; roundsDone: number };
  /** trace.run.json: the first rounds as the engine ran them (a run that started at the beginning and saves). */
  trace?: string;
  stages: TrainResult["stages"];
  /** Heap allocations inside the engine's training loop: 0 (-1 where the build cannot count them). */
  loopAllocations: number;
  tokens: number;
  seconds: number;
}

/** Each stage's GPU: the plan's (one machine's), or the ones asked for. */
export function stageDevices(plan: Plan, asked: number[] | undefined): number[] {
  if (asked !== undefined) {
    if (asked.length !== plan.stages.length || !asked.every((d) => Number.isInteger(d) && d >= 0)) {
      throw new RunError("engineRefused", `devices: ${asked.length} GPU numbers for ${plan.stages.length} stages (one non-negative integer per stage)`);
    }
    return asked;
  }
  const nodes = new Set(plan.stages.map((s) => s.node));
  if (nodes.size > 1) throw new RunError("engineRefused", `the plan spans ${nodes.size} nodes; \`loraflow run\` trains on one machine's GPUs`);
  return plan.stages.map((s) => s.device);
}

/** The programs a GPU runs: the plan's own dtype (bf16 or fp32). */
export function devicePrograms(plan: Plan, phases: Plan["schedule"]["phases"]): Plan["programs"] {
  if (plan.model.dtype === "fp16") throw new RunError("engineRefused", "the CUDA backend trains bf16 and fp32 models; this plan's model is fp16");
  if (phases === plan.schedule.phases) return plan.programs;
  return lowerPlanPrograms({ ...plan, schedule: { ...plan.schedule, phases } });
}

/** Every adapter has data, and text data a tokenizer (before anything slow is checked). */
export function checkData(plan: Plan, planDir: string): void {
  for (const a of plan.adapters) adapterDataFile(planDir, a);
  if (plan.adapters.some((a) => a.data.format !== "tokens")) planTokenizer(plan, planDir);
}

const plural = (n: number, one: string, many: string) => `${n} ${n === 1 ? one : many}`;

/** The phases as the engine takes them: micro-batches by id, actions as codes. */
export function enginePhases(phases: Plan["schedule"]["phases"], microBatches: ReturnType<typeof microBatchesById>) {
  return phases.map((p, i) => ({ rounds: p.rounds, adapters: p.adapters, microBatches: microBatches[i], actions: p.actions.map(actionCodes) }));
}

/** Every phase's micro-batches by id; ids must be 0..n-1, once each. */
export function microBatchesById(phases: Plan["schedule"]["phases"]) {
  return phases.map((p, i) => byId(p.microBatches, i));
}

/** The files a run's data is made from: a resumed run must find them as they were. */
export function runInputs(plan: Plan, planDir: string): string[] {
  const files = plan.adapters.map((a) => adapterDataFile(planDir, a));
  if (plan.adapters.some((a) => a.data.format !== "tokens") && plan.model.tokenizer !== null) {
    for (const f of ["tokenizer.json", "tokenizer_config.json"]) {
      const file = path.join(resolveInPlan(planDir, plan.model.tokenizer), f);
      if (fs.existsSync(file)) files.push(file);
    }
  }
  return [...new Set(files)];
}

/**
 * Each adapter as the engine takes it: its settings, initial LoRA weights and tokenised data in
 * step order; resuming, the weights, optimizer moments and steps done of the state it resumes.
 */
export function engineAdapters(plan: Plan, planDir: string, steps: number[], options: Pick<RunOptions, "onWarning"> = {}, resume?: ResumeState, heldOut: Example[][] = []) {
  checkData(plan, planDir);
  return plan.adapters.map((a, i) => {
    const dataFile = adapterDataFile(planDir, a);
    const data = adapterDataset(plan, planDir, a);
    const { truncated, dropped, skipped } = data.stats;
    if (truncated > 0) {
      warn(options, "LF6101", `adapter "${a.name}": ${plural(truncated, "example is", "examples are")} longer than seq_len ${a.seqLen} and ${truncated === 1 ? "was" : "were"} cut to fit, keeping the start (${dataFile})`);
    }
    if (dropped > 0) warn(options, "LF6103", `adapter "${a.name}": ${plural(dropped, "example has", "examples have")} no counted token${truncated > 0 ? " once cut to seq_len" : ""} and ${dropped === 1 ? "was" : "were"} left out (${dataFile})`);
    if (skipped > 0) warn(options, "LF6104", `adapter "${a.name}": ${plural(skipped, "bad line was", "bad lines were")} skipped: ${data.skippedExamples.join("; ")}${skipped > data.skippedExamples.length ? "; ..." : ""}`);
    heldOut[i] = data.eval;
    const sequences = buildSequences(data.train, a.seqLen, a.pack);
    const { order, stepTokens } = stepOrder(sequences, steps[i]!, a.batch, a.seed);
    const sites = resume !== undefined ? resume.weights[i]! : a.init === null ? initLora(plan, a) : loadLora(resolveInPlan(planDir, a.init), plan, a);
    const moments: SiteMoments | undefined = resume?.moments[i];
    return {
      name: a.name,
      rank: a.rank,
      scale: a.scaling,
      dropout: a.dropout,
      seed: a.seed,
      steps: steps[i]!,
      scheduleSteps: a.steps,
      saveEvery: a.saveEvery,
      // The held-out loss every eval_every steps and after the last (or after the last alone).
      evalEvery: data.eval.length === 0 ? 0 : a.data.evalEvery > 0 ? a.data.evalEvery : steps[i]!,
      batch: a.batch,
      microBatch: a.microBatch,
      optimizer: a.optimizer,
      sites,
      ...(resume !== undefined && { stepsDone: resume.steps[i]!, moments }),
      data: {
        sequences: sequences.count,
        seqLen: sequences.seqLen,
        tokens: sequences.tokens,
        targets: sequences.targets,
        segStart: sequences.segStart,
        pos: sequences.pos,
        order,
        stepTokens,
      },
    };
  });
}

/** A phase's micro-batches in id order, as the engine indexes them; ids must be 0..n-1, once each. */
function byId<T extends { id: number; parts: unknown }>(microBatches: readonly T[], phase: number): T["parts"][] {
  const out = new Array<T["parts"]>(microBatches.length);
  for (const mb of microBatches) {
    if (!Number.isInteger(mb.id) || mb.id < 0 || mb.id >= microBatches.length || out[mb.id] !== undefined) {
      throw new RunError("engineRefused", `plan: the micro-batch ids of phase ${phase} are not 0 to ${microBatches.length - 1} once each`);
    }
    out[mb.id] = mb.parts;
  }
  return out;
}

function realPath(p: string): string {
  try {
    return fs.realpathSync(p);
  } catch {
    return p;
  }
}

const warn = (options: Pick<RunOptions, "onWarning">, code: string, message: string) => options.onWarning?.({ code, message });

/**
 * Trains a compiled plan on the CPU engine (or on GPUs: options.backend) and writes every adapter
 * in PEFT format. Every `save_every` steps (and when stopped) the run's state goes to
 * PLAN_DIR/resume, and each adapter due a checkpoint gets OUT/checkpoint-STEP (its PEFT files,
 * optimizer state and trainer_state.json). Everything the run reads (weights, data, init
 * adapters, the state it resumes) is read and checked, its memory counted and its out folders
 * readied before training starts; adapters are written only after it succeeded, each in one step.
 */
export async function runPlan(plan: Plan, planDir: string, options: RunOptions = {}): Promise<RunResult> {
  const native = loadNative();
  const { phases, steps } = truncatePhases(plan, options.maxSteps);
  checkData(plan, planDir);
  // Micro-batch ids first: everything after (the memory count, the engine) indexes by them.
  const microBatches = microBatchesById(phases);
  const backend = options.backend ?? "cpu";
  // The CPU engine holds everything in host memory; a GPU's arenas are the plan's own, which
  // the compiler fitted to the device.
  if (backend === "cpu") checkMemory(plan);
  const devices = backend === "cpu" ? undefined : stageDevices(plan, options.devices);

  // What a state of this run is recognised by, and the state to resume.
  const identity = runIdentity(plan, planDir, options.maxSteps, runInputs(plan, planDir));
  const resume = options.resume ? readResumeState(planDir, plan, identity) : undefined;

  // Data and adapters first: they are cheap to check, the base weights are not.
  const heldOut: Example[][] = [];
  const adapters = engineAdapters(plan, planDir, steps, options, resume, heldOut);

  // Out folders before the weights: an out that cannot be written fails before the slow part.
  const save = options.save !== false;
  const outputs = save ? plan.adapters.map((a) => new AdapterOutput(a.name, resolveInPlan(planDir, a.out))) : [];
  try {
    outputs.forEach((o, i) => {
      const every = plan.adapters[i]!.saveEvery;
      const done = resume?.steps[i] ?? 0;
      const adopt = resume === undefined ? undefined : {
        required: every > 0 ? Array.from({ length: Math.floor(done / every) }, (_, k) => (k + 1) * every).concat(done === steps[i] && done % every !== 0 ? [done] : []) : [],
        allowed: (k: number) => every > 0 && (k % every === 0 || k === steps[i]),
      };
      for (const note of o.prepare(adopt === undefined ? {} : { adopt })) warn(options, "LF6102", note);
    });
  } catch (e) {
    outputs.forEach((o) => o.abandon());
    throw e;
  }

  // adapter_config.json names the model folder itself, not the link the plan reaches it by.
  const baseModel = plan.model.folder === null ? plan.model.name : realPath(resolveInPlan(planDir, plan.model.folder));
  const sequences = adapters.map((a) => a.data.sequences);
  let result: TrainResult;
  let tokens = 0;
  let lastState: string | undefined;
  const lastLoss = new Array<number>(plan.adapters.length).fill(NaN);
  // Every step's figures, appended at full precision (a resumed run goes on appending).
  const metrics = save ? fs.openSync(path.join(planDir, "metrics.jsonl"), "a") : undefined;
  const stopFlag = new Int32Array(1);
  const onStop = () => (stopFlag[0] = 1);
  if (options.stop?.aborted) onStop();
  options.stop?.addEventListener("abort", onStop, { once: true });
  const started = performance.now();
  try {
    const weights = loadBaseWeights(plan, planDir);
    // An exception in a callback cannot cross the engine's threads: keep the first, fail the run with it.
    let callbackError: unknown;
    const guarded = <T>(fn: (event: T) => void) => (event: T) => {
      try {
        fn(event);
      } catch (e) {
        callbackError ??= e;
      }
    };
    result = await native.train(
      {
        config: plan.model.config,
        stages: plan.stages.map((s) => ({ blocks: s.blocks, embedding: s.embedding, head: s.head })),
        programs: backend === "cpu" ? cpuPrograms(plan, phases) : devicePrograms(plan, phases),
        ...(devices === undefined ? {} : { backend, devices: Int32Array.from(devices) }),
        weights: Object.fromEntries(weights),
        adapters,
        phases: enginePhases(phases, microBatches),
        ...(resume !== undefined && { startRound: resume.roundsDone }),
        traceRounds: TRACED_ROUNDS,
        blasThreads: options.threads ?? 1,
      },
      guarded((e) => {
        tokens += e.tokens;
        lastLoss[e.adapter] = e.loss;
        const a = plan.adapters[e.adapter]!;
        const rows = a.batch * a.seqLen;
        const seconds = (performance.now() - started) / 1000;
        if (metrics !== undefined) {
          const row = { adapter: a.name, step: e.step, loss: e.loss, lr: e.lr, grad_norm: e.gradNorm, tokens: rows, counted_tokens: e.tokens, seconds };
          fs.writeSync(metrics, JSON.stringify(row) + "\n");
        }
        const stages = e.busy.map((busy, s) => ({ busy, wait: e.wait[s]! }));
        options.onStep?.({ adapter: a.name, step: e.step, steps: steps[e.adapter]!, loss: e.loss, lr: e.lr, gradNorm: e.gradNorm, tokens: e.tokens, rows, seconds, stages });
      }),
      (c) => {
        const a = plan.adapters[c.adapter]!;
        if (c.evaluate) {
          const { loss, tokens } = examplesLoss(plan, weights, a, c.sites, heldOut[c.adapter]!);
          if (metrics !== undefined) fs.writeSync(metrics, JSON.stringify({ adapter: a.name, step: c.step, eval_loss: loss, eval_tokens: tokens, seconds: (performance.now() - started) / 1000 }) + "\n");
          guarded(options.onEval ?? (() => {}))({ adapter: a.name, step: c.step, loss, tokens });
        }
        if (!save || !c.save) return;
        // A checkpoint that cannot be written is reported; training and the final save go on.
        let dir: string;
        try {
          dir = outputs[c.adapter]!.writeCheckpoint(c.step, checkpointFiles(a, c.sites, c.moments, c.step, sequences[c.adapter]!, baseModel));
        } catch (e) {
          warn(options, "LF6005", `adapter "${a.name}": checkpoint ${c.step} was not written (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
          return;
        }
        guarded((at: string) => options.onCheckpoint?.(a.name, c.step, at))(dir);
      },
      (snap) => {
        if (!save) return;
        try {
          lastState = writeResumeState(planDir, plan, identity, { roundsDone: snap.roundsDone, steps: snap.steps, weights: snap.adapters, moments: snap.moments }, baseModel, sequences);
        } catch (e) {
          warn(options, "LF6005", `the run's state after round ${snap.roundsDone} was not written (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); a resumed run would start from the one before`);
          return;
        }
        guarded(options.onSaved ?? (() => {}))({ dir: lastState, roundsDone: snap.roundsDone, totalRounds: totalRounds(phases) });
      },
      stopFlag,
    );
    // The engine settles its promise only after every progress and checkpoint call was delivered.
    if (callbackError !== undefined) {
      throw callbackError instanceof Error && !(callbackError instanceof RunError) ? new RunError("engineRefused", `during training: ${callbackError.message}`) : callbackError;
    }
  } catch (e) {
    const kept = outputs.map((o) => o.abandon()).filter((d): d is string => d !== undefined);
    const note = kept.length > 0 ? `; this run's checkpoints are in ${kept.join(", ")} (\`--resume\` continues from them; another run into the same out removes them)` : "";
    if (e instanceof RunError) throw new RunError(e.kind, e.message + note);
    if (e instanceof Error && /^(training failed|train): /.test(e.message)) {
      const kind = /base weight/.test(e.message) ? "weightsInvalid" : /is not finite/.test(e.message) ? "diverged" : /resumes after/.test(e.message) ? "resumeInvalid" : "engineRefused";
      throw new RunError(kind, e.message.replace(/^training failed: |^train: /, "") + note);
    }
    throw e;
  } finally {
    options.stop?.removeEventListener("abort", onStop);
    if (metrics !== undefined) fs.closeSync(metrics);
  }
  const seconds = (performance.now() - started) / 1000;
  const resumedFrom = resume === undefined ? {} : { resumedFrom: { dir: resume.dir, roundsDone: resume.roundsDone } };
  const summary = { stages: result.stages, loopAllocations: result.loopAllocations, tokens, seconds, ...resumedFrom };

  if (result.stoppedAfter >= 0) {
    // Stopped: the out folders keep what they held; this run's checkpoints wait beside them for --resume.
    outputs.forEach((o) => o.abandon());
    const out = plan.adapters.map((a, i) => ({ name: a.name, out: resolveInPlan(planDir, a.out), steps: steps[i]!, loss: lastLoss[i]!, sites: result.adapters[i]! }));
    return { adapters: out, stopped: { roundsDone: result.stoppedAfter, totalRounds: result.totalRounds, state: lastState }, ...summary };
  }

  // Every adapter is written that can be; a failure is reported after the others are saved.
  const failures: RunError[] = [];
  const out = plan.adapters.map((a, i) => {
    const sites = result.adapters[i]!;
    if (save) {
      try {
        outputs[i]!.finish(encodeAdapter(a, sites, baseModel));
      } catch (e) {
        if (!(e instanceof RunError)) throw e;
        failures.push(e);
      }
    }
    return { name: a.name, out: save ? outputs[i]!.target : resolveInPlan(planDir, a.out), steps: steps[i]!, loss: lastLoss[i]!, sites };
  });
  if (failures.length > 0) throw new RunError(failures[0]!.kind, failures.map((f) => f.message).join("\n"));
  // The measured first rounds beside the compiler's predicted trace.json, in its layout.
  let trace: string | undefined;
  if (save && resume === undefined && result.stages.some((s) => s.trace.length > 0)) {
    trace = path.join(planDir, "trace.run.json");
    try {
      writeFileDurably(trace, JSON.stringify(measuredTrace(plan, result.stages)) + "\n");
    } catch (e) {
      warn(options, "LF6005", `${trace} was not written (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
      trace = undefined;
    }
  }
  return { adapters: out, ...summary, ...(trace !== undefined && { trace }) };
}

const totalRounds = (phases: Plan["schedule"]["phases"]) => phases.reduce((n, p) => n + p.rounds, 0);
