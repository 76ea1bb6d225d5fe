import * as fs from "node:fs";
import { TARGET_MODULES, type Plan } from "../compiler/index.js";
import { RunError } from "./errors.js";
import { truncatePhases } from "./lower-plan.js";
import { cpuPrograms } from "./memory-need.js";
import { tempName } from "./output/owned.js";
import { checkData, devicePrograms, engineAdapters, enginePhases, microBatchesById, stageDevices, type RunOptions } from "./run.js";
import { loadBaseWeights } from "./weights/base-weights.js";

/**
 * A run file: everything the engine is given to train a plan, for the standalone driver
 * (`build/loraflow_engine_run`), which trains without Node.js (native/src/spec/run_file.h has
 * the layout): the training spec as a JSON header, each typed array replaced by
 * `{"$array": "f32" | "f64" | "i32" | "u64", "offset", "length"}` into the data that follows.
 * The programs are there twice, lowered in fp32 for the CPU engine and in the model's dtype for
 * GPUs. A model declared inline carries its seed instead of its weights, and a fresh adapter
 * its seed instead of its initial A and B (the driver draws both as the runtime does), so that a
 * 7B-shaped benchmark's file stays small.
 */
export interface EngineRunOptions extends Pick<RunOptions, "maxSteps" | "devices" | "onWarning"> {
  /** What the driver trains on unless told otherwise (default: cuda for a plan compiled for GPUs, else cpu). */
  backend?: "cpu" | "cuda" | "cuda-emulated";
}

export const RUN_FILE_MAGIC = "LFRUN001";

type Typed = Float32Array | Float64Array | Int32Array | BigUint64Array;

function arrayType(a: ArrayBufferView): string | undefined {
  if (a instanceof Float32Array) return "f32";
  if (a instanceof Float64Array) return "f64";
  if (a instanceof Int32Array) return "i32";
  if (a instanceof BigUint64Array) return "u64";
  return undefined;
}

/** The value with each typed array replaced by its reference; the arrays, in order, with their offsets. */
function encode(value: unknown, arrays: { array: Typed; offset: number }[], at: { bytes: number }, where: string): unknown {
  if (ArrayBuffer.isView(value)) {
    const type = arrayType(value);
    if (type === undefined) throw new RunError("engineRefused", `${where}: a ${value.constructor.name} has no place in a run file`);
    const array = value as Typed;
    const offset = Math.ceil(at.bytes / 64) * 64;
    arrays.push({ array, offset });
    at.bytes = offset + array.byteLength;
    return { $array: type, offset, length: array.length };
  }
  if (Array.isArray(value)) return value.map((v, i) => encode(v, arrays, at, `${where}[${i}]`));
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, encode(v, arrays, at, `${where}.${k}`)]));
  }
  if (typeof value === "number" && !Number.isFinite(value)) throw new RunError("engineRefused", `${where}: ${value} has no place in a run file`);
  return value;
}

/** Writes `spec` as a run file at `file`: staged beside it, flushed, renamed over it. Returns its size. */
export function writeRunFile(file: string, spec: Record<string, unknown>): number {
  const arrays: { array: Typed; offset: number }[] = [];
  const header = Buffer.from(JSON.stringify(encode(spec, arrays, { bytes: 0 }, "spec")), "utf8");
  const head = Buffer.alloc(16);
  head.write(RUN_FILE_MAGIC, 0, "latin1");
  head.writeBigUInt64LE(BigInt(header.length), 8);
  const data = Math.ceil((16 + header.length) / 64) * 64;
  const temp = tempName(file);
  const fd = fs.openSync(temp, "wx");
  let size = 0;
  try {
    fs.writeSync(fd, head, 0, 16, 0);
    fs.writeSync(fd, header, 0, header.length, 16);
    size = data;
    for (const { array, offset } of arrays) {
      const bytes = new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
      // In pieces: one write of several GB is not portable.
      for (let done = 0; done < bytes.length; done += 1 << 28) fs.writeSync(fd, bytes, done, Math.min(1 << 28, bytes.length - done), data + offset + done);
      size = data + offset + bytes.length;
    }
    if (size === data) fs.writeSync(fd, Buffer.alloc(data - 16 - header.length), 0, data - 16 - header.length, 16 + header.length);
    fs.fsyncSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(temp, { force: true });
    throw e;
  }
  fs.closeSync(fd);
  fs.renameSync(temp, file);
  return size;
}

/**
 * Everything `loraflow run` would hand the engine for this plan, as a run file: the data read,
 * tokenised and put in step order, the initial adapters, the base weights (or their seed), the
 * programs for both kinds of engine, and each stage's GPU. Returns the file's size in bytes.
 */
export function writeEngineRun(plan: Plan, planDir: string, file: string, options: EngineRunOptions = {}): number {
  const { phases, steps } = truncatePhases(plan, options.maxSteps);
  checkData(plan, planDir);
  const microBatches = microBatchesById(phases);
  // A fresh adapter goes as its seed (the driver draws it as initLora does): a 7B model's four
  // rank-16 adapters would otherwise be most of the file.
  const adapters = engineAdapters(plan, planDir, steps, options).map((a, i) => {
    const p = plan.adapters[i]!;
    if (p.init !== null) return a;
    const { sites: _drawn, ...rest } = a;
    return { ...rest, randomInit: { seed: p.seed, modules: p.targets.map((m) => TARGET_MODULES.indexOf(m)) } };
  });
  const onGpus = plan.cluster.device.name !== "cpu";
  const spec: Record<string, unknown> = {
    format: "loraflow-engine-run",
    backend: options.backend ?? (onGpus ? "cuda" : "cpu"),
    devices: Int32Array.from(stageDevices(plan, options.devices)),
    config: plan.model.config,
    stages: plan.stages.map((s) => ({ blocks: s.blocks, embedding: s.embedding, head: s.head })),
    cpuPrograms: cpuPrograms(plan, phases),
    adapters,
    phases: enginePhases(phases, microBatches),
  };
  if (plan.model.dtype !== "fp16") spec["gpuPrograms"] = devicePrograms(plan, phases);
  if (plan.model.folder === null) spec["randomWeights"] = { seed: plan.model.seed };
  else spec["weights"] = Object.fromEntries(loadBaseWeights(plan, planDir));
  return writeRunFile(file, spec);
}
