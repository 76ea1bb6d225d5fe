import * as fs from "node:fs";
import { createRequire } from "node:module";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { modelGradPrograms, type ModelGradSpec } from "./model-programs.js";

/** What the C++ engine exports (native/src/binding). */
export interface NativeEngine {
  /** cuda: whether this build has the CUDA backend (nvcc was there when it was built). */
  build: { blas: "openblas" | "portable"; compiler: string; cuda: boolean };
  /** The GPUs the CUDA runtime sees, or (devices empty) why there are none; where cuBLASLt and NCCL load from, or why they do not. */
  probeCuda(): { devices: string[]; problem: string; libraries: Record<"cublasLt" | "nccl", { path?: string; problem?: string }> };
  /** One operator in double precision: its output and, given `dout`, its input gradients. */
  op(
    name: string,
    params: Record<string, number>,
    inputs: Record<string, Float64Array | Int32Array | BigUint64Array>,
    dout?: Float64Array,
  ): { out: Float64Array; grads: Record<string, Float64Array> };

  /** Whole-model loss and LoRA gradients, one micro-batch at a time (tests and eval). */
  modelGrad(spec: unknown): { loss: number; grads: Record<string, { A: Float64Array; B: Float64Array }>[] };
  /** Seconds per [M, K] x [K, N] float GEMM of this build on `threads` BLAS threads, averaged over `repeats`. */
  benchGemm(M: number, N: number, K: number, repeats: number, threads: number): number;
  /** Swaps two paths in one step (renameat2 RENAME_EXCHANGE); throws with `code` (EINVAL, ENOSYS ...) where it cannot. */
  exchangePaths(a: string, b: string): void;
  /**
   * Trains a lowered plan on one thread per stage; resolves with the trained adapters. Setting
   * `stopFlag[0]` to 1 ends the run after the round in flight, with a snapshot of its state.
   */
  train(spec: unknown, onStep: (event: StepEvent) => void, onCheckpoint: (event: CheckpointEvent) => void, onSnapshot: (event: SnapshotEvent) => void, stopFlag?: Int32Array): Promise<TrainResult>;
}

export interface StepEvent {
  adapter: number;
  step: number;
  loss: number;
  lr: number;
  gradNorm: number;
  tokens: number;
  /** By stage: busy and waiting seconds so far. */
  busy: number[];
  wait: number[];
}

/** An adapter after a step: every save_every steps and after its last. */
export interface CheckpointEvent {
  adapter: number;
  step: number;
  /** Due a checkpoint (save_every), an evaluation of the held-out examples (eval_every), or both. */
  save: boolean;
  evaluate: boolean;
  sites: Record<string, { A: Float32Array; B: Float32Array }>;
  moments: Record<string, Float32Array>;
}

/** The whole run's state after a round: per adapter its steps, weights and optimizer moments. */
export interface SnapshotEvent {
  roundsDone: number;
  /** The run stops after this round (a stop was asked for). */
  stopped: boolean;
  steps: number[];
  adapters: Record<string, { A: Float32Array; B: Float32Array }>[];
  moments: Record<string, Float32Array>[];
}

export interface TrainResult {
  adapters: Record<string, { A: Float32Array; B: Float32Array }>[];
  /** Per stage: busy and waiting time, and the three arenas it allocated (bytes). */
  stages: {
    busySeconds: number;
    waitSeconds: number;
    weightBytes: number;
    adapterBytes: number;
    activationBytes: number;
    /** The first traced rounds' actions: [op, mb, channel, peer, round, start, waited, end] each, seconds since the run started. */
    trace: Float64Array;
  }[];
  /** Heap allocations the stage workers made inside the training loop: 0, or -1 where the build cannot count them (sanitized). */
  loopAllocations: number;
  /** Rounds done when the run was stopped; -1 when it ran to its end. */
  stoppedAfter: number;
  totalRounds: number;
}

let cached: NativeEngine | undefined;

/** The package root: the folder above this file (source or built) that holds package.json. */
function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!fs.existsSync(path.join(dir, "package.json"))) {
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error("loraflow: cannot find the package folder");
    dir = parent;
  }
  return dir;
}

/** Loads the addon `npm ci` built (cmake-js, build/Release/loraflow_native.node). */
export function loadNative(): NativeEngine {
  if (cached) return cached;
  // LORAFLOW_NATIVE_BUILD picks another build folder (the sanitized one in CI).
  const file = path.join(packageRoot(), process.env["LORAFLOW_NATIVE_BUILD"] ?? "build", "Release", "loraflow_native.node");
  if (!fs.existsSync(file)) {
    throw new Error(`loraflow's native engine is not built (${file} is missing): run \`npm ci\` or \`npm run build:native\` (needs cmake and a C++17 compiler)`);
  }
  const engine = createRequire(import.meta.url)(file) as NativeEngine;
  // modelGrad runs compiled programs: lowered here for the spec unless it brings its own.
  const modelGrad = engine.modelGrad.bind(engine);
  cached = {
    ...engine,
    modelGrad(spec: unknown) {
      const s = spec as ModelGradSpec;
      let programs: unknown = s?.programs;
      if (programs === undefined) {
        try {
          programs = modelGradPrograms(s);
        } catch {
          programs = undefined; // a malformed spec: the engine says what is wrong with it
        }
      }
      return modelGrad({ ...s, programs });
    },
  };
  return cached;
}
