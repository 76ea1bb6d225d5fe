import * as path from "node:path";
import type { Diagnostic, DiagnosticName, JobAst, Span } from "../dsl/index.js";
import { diagnostic } from "../dsl/index.js";
import type { CompileHost } from "./host.js";
import type { AdapterSpec, Dtype, Job, LlamaArch, ScheduleName } from "./job.js";
import type { TargetModule } from "./models/llama.js";
import type { Graph } from "./models/llama-graph.js";
import type { WeightsInfo } from "./models/weights.js";
import type { StageMemory } from "./cost/memory.js";
import type { Programs } from "./programs/types.js";
import type { PhaseCosts, Simulation, Timeline } from "./simulate/simulate.js";

export interface ResolvedModel {
  name: string;
  arch: LlamaArch;
  dtype: Dtype;
  /** Absolute path of the Hugging Face folder, when the model has one. */
  folder: string | null;
  /** Absolute path of the folder holding tokenizer.json: the `tokenizer` given, else the model folder. */
  tokenizer: string | null;
  weights: WeightsInfo | null;
  /** Seed of the random weights when there is no folder. */
  seed: number;
}

export interface ResolvedAdapter extends Omit<AdapterSpec, "data"> {
  /** null: planned without data (LF3011), which `run` refuses. */
  data: string | null;
  /** Targets expanded to module names, in the model's order. */
  modules: TargetModule[];
  /** Non-blank lines of the data file (0 without one). */
  examples: number;
  steps: number;
  microBatchesPerStep: number;
  /** alpha / r, or alpha / sqrt(r) with rsLoRA. */
  scaling: number;
}

/** A pipeline stage: a contiguous run of layer blocks (attention or MLP halves of layers). */
export interface StageAssignment {
  index: number;
  device: number;
  /** [first, last) over 2 * layers blocks: block b is layer floor(b / 2), attention when b is even. */
  blocks: [number, number];
  embedding: boolean;
  head: boolean;
}

export interface MicroBatchPart {
  adapter: number;
  /** Which of the adapter's steps in the round (0 .. stepsPerRound - 1). */
  step: number;
  /** Which micro-batch of the adapter's step (0 .. microBatchesPerStep - 1). */
  index: number;
  sequences: number;
}

export interface MicroBatch {
  id: number;
  parts: MicroBatchPart[];
}

/**
 * A run of identical rounds. In a round every adapter of the phase takes `stepsPerRound`
 * optimizer steps; phases change when adapters finish training.
 */
export interface Phase {
  rounds: number;
  stepsPerRound: number;
  adapters: number[];
  microBatches: MicroBatch[];
  /** Per stage, the actions of one round in execution order (see plan/actions.ts). */
  actions: string[][];
}

export interface Schedule {
  name: Exclude<ScheduleName, "auto">;
  /** Adapters fused into shared micro-batches, a group each, in stream order (`mlora` only). */
  groups?: number[][];
  phases: Phase[];
}

/** One schedule `auto` (or `--compare`) weighed: what it would cost, and whether it fits. */
export interface ScheduleOption {
  /** "mlora", or "mlora fused a+b c+d" for a fused interleaving. */
  label: string;
  name: Schedule["name"];
  groups?: number[][];
  /** Absent when the schedule does not fit or its busiest stage alone is slower than the best. */
  makespanSeconds?: number;
  idleFraction?: number;
  /** The largest stage's peak. */
  peakBytes: number;
  fits: boolean;
  chosen: boolean;
  /** Skipped without simulation: its busiest stage's work alone exceeds the best makespan. */
  pruned?: boolean;
}

/** A schedule as priced and simulated while `auto` weighed it. */
export interface Simulated {
  schedule: Schedule;
  costs: PhaseCosts[];
  simulation: Simulation;
}

/** The one structure every pass reads and returns a new version of. */
export interface Ir {
  source: string;
  ast?: JobAst;
  job?: Job;
  model?: ResolvedModel;
  adapters?: ResolvedAdapter[];
  graph?: Graph;
  stages?: StageAssignment[];
  schedule?: Schedule;
  simulation?: Simulation;
  /** The first rounds of the first phase as simulated, action by action. */
  timeline?: Timeline;
  /** Per stage, its peak memory. */
  memory?: StageMemory[];
  /** The schedule's compiled stage programs, from which `memory` comes (plan-memory). */
  programs?: Programs;
  /** The schedules weighed, with `auto` or `compare`. */
  scheduleOptions?: ScheduleOption[];
  /** The chosen schedule's prices and simulation, when weighing it produced them. */
  simulated?: Simulated;
}

export interface CompileOptions {
  /** Overrides the plan block's schedule. */
  schedule?: ScheduleName;
  /** Overrides the plan block's stage count. */
  stages?: number | "auto";
  /** Weigh every schedule (and fused interleavings), not only the one chosen. */
  compare?: boolean;
}

/** What passes may use besides the IR: reading files, and a sink for diagnostics. */
export interface PassContext {
  host: CompileHost;
  /** The job file's name as diagnostics print it. */
  file: string;
  /** The folder job paths are relative to (absolute). */
  baseDir: string;
  /** The folder the plan goes to (absolute): adapters are written under it unless `out` says otherwise. */
  planDir: string;
  options: CompileOptions;
  report(kind: DiagnosticName, message: string, span?: Span): void;
  /** A path as messages show it: relative to the working folder when under it, else absolute. */
  display(path: string): string;
  diagnostics: Diagnostic[];
}

export function makeContext(host: CompileHost, file: string, baseDir: string, planDir: string, options: CompileOptions): PassContext {
  const diagnostics: Diagnostic[] = [];
  return {
    host,
    file,
    baseDir,
    planDir,
    options,
    diagnostics,
    display(p) {
      const rel = path.relative(process.cwd(), p);
      return rel === "" ? "." : rel.startsWith("..") || path.isAbsolute(rel) ? p : rel;
    },
    report(kind, message, span) {
      diagnostics.push(diagnostic(kind, message, span, file));
    },
  };
}

export interface Pass {
  name: string;
  /** IR fields the pass needs; the driver skips it when one is missing (an earlier error). */
  needs: (keyof Ir)[];
  run(ir: Ir, ctx: PassContext): Ir;
}
