import * as os from "node:os";
import * as path from "node:path";
import type { Plan } from "../compiler/index.js";
import { buildSequences, stepOrder } from "./data/sequences.js";
import { readTokens } from "./data/tokens.js";
import { RunError } from "./errors.js";
import { actionCodes, truncatePhases } from "./lower-plan.js";
import { loadNative, type TrainResult } from "./native.js";
import { loadBaseWeights } from "./weights/base-weights.js";
import { initLora, loadLora, writePeftAdapter, type LoraSites } from "./weights/lora.js";

export interface StepReport {
  adapter: string;
  step: number;
  steps: number;
  loss: number;
  lr: number;
  gradNorm: number;
  tokens: number;
}

export interface RunOptions {
  /** Stop every adapter after this many optimizer steps. */
  maxSteps?: number;
  /** BLAS threads per stage worker (OpenBLAS builds only). */
  threads?: number;
  onStep?: (report: StepReport) => void;
  /** Write the trained adapters (default true). */
  save?: boolean;
}

export interface RunResult {
  adapters: { name: string; out: string; steps: number; loss: number; sites: LoraSites }[];
  stages: TrainResult["stages"];
  tokens: number;
  seconds: number;
}

/** The CPU engine holds the base weights in fp32: refuse early, and say so, when they cannot fit. */
export function checkMemory(plan: Plan): void {
  const need = plan.model.parameters * 4;
  const free = os.freemem();
  if (need > 0.8 * free) {
    throw new RunError(
      `model ${plan.model.name} has ${(plan.model.parameters / 1e9).toFixed(2)}B parameters: ${(need / 1e9).toFixed(1)} GB in fp32 on the CPU, ` +
        `and this machine has ${(free / 1e9).toFixed(1)} GB free`,
    );
  }
}

/**
 * Trains a compiled plan on the CPU engine and writes every adapter in PEFT format (and, every
 * `save_every` steps, a checkpoint into OUT/checkpoint-STEP). Everything
 * the run reads (weights, data, init adapters) is read and checked before training starts;
 * adapters are written only after it succeeded.
 */
export async function runPlan(plan: Plan, planDir: string, options: RunOptions = {}): Promise<RunResult> {
  const native = loadNative();
  const { phases, steps } = truncatePhases(plan, options.maxSteps);

  // Data and adapters first: they are cheap to check, the base weights are not.
  const adapters = plan.adapters.map((a, i) => {
    if (a.data.format !== "tokens") {
      throw new RunError(`adapter "${a.name}": format ${a.data.format} needs a tokenizer; \`loraflow run\` reads \`tokens\` data (JSONL of input_ids and labels) today`);
    }
    const examples = readTokens(path.resolve(planDir, a.data.path), plan.model.config.vocab);
    const sequences = buildSequences(examples, a.seqLen, a.pack);
    const { order, stepTokens } = stepOrder(sequences, steps[i]!, a.batch, a.seed);
    const sites = a.init === null ? initLora(plan, a) : loadLora(path.resolve(planDir, a.init), plan, a);
    return {
      name: a.name,
      rank: a.rank,
      scale: a.scaling,
      dropout: a.dropout,
      seed: a.seed,
      steps: steps[i]!,
      scheduleSteps: a.steps,
      saveEvery: a.saveEvery,
      batch: a.batch,
      microBatch: a.microBatch,
      optimizer: a.optimizer,
      sites,
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

  checkMemory(plan);
  const weights = loadBaseWeights(plan, planDir);
  const baseModel = plan.model.folder === null ? plan.model.name : path.resolve(planDir, plan.model.folder);

  const started = performance.now();
  let tokens = 0;
  // An exception in a callback cannot cross the engine's threads: keep the first, fail the run with it.
  let callbackError: unknown;
  const guarded = <T>(fn: (event: T) => void) => (event: T) => {
    try {
      fn(event);
    } catch (e) {
      callbackError ??= e;
    }
  };
  const lastLoss = new Array<number>(plan.adapters.length).fill(NaN);
  const result = await native.train(
    {
      config: plan.model.config,
      stages: plan.stages.map((s) => ({ blocks: s.blocks, embedding: s.embedding, head: s.head })),
      weights: Object.fromEntries(weights),
      adapters,
      phases: phases.map((p) => ({
        rounds: p.rounds,
        adapters: p.adapters,
        microBatches: p.microBatches.map((mb) => mb.parts),
        actions: p.actions.map(actionCodes),
      })),
      blasThreads: options.threads ?? 1,
    },
    guarded((e) => {
      tokens += e.tokens;
      lastLoss[e.adapter] = e.loss;
      options.onStep?.({ adapter: plan.adapters[e.adapter]!.name, step: e.step, steps: steps[e.adapter]!, loss: e.loss, lr: e.lr, gradNorm: e.gradNorm, tokens: e.tokens });
    }),
    guarded((c) => {
      const a = plan.adapters[c.adapter]!;
      if (options.save !== false) writePeftAdapter(path.join(path.resolve(planDir, a.out), `checkpoint-${c.step}`), a, c.sites, baseModel);
    }),
  );
  // The engine settles its promise only after every progress and checkpoint call was delivered.
  if (callbackError !== undefined) {
    throw callbackError instanceof Error ? new RunError(`during training: ${callbackError.message}`) : callbackError;
  }
  const seconds = (performance.now() - started) / 1000;

  const out = plan.adapters.map((a, i) => {
    const dir = path.resolve(planDir, a.out);
    const sites = result.adapters[i]!;
    if (options.save !== false) writePeftAdapter(dir, a, sites, baseModel);
    return { name: a.name, out: dir, steps: steps[i]!, loss: lastLoss[i]!, sites };
  });
  return { adapters: out, stages: result.stages, tokens, seconds };
}
