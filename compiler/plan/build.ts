import { createHash } from "node:crypto";
import * as path from "node:path";
import type { Ir, ScheduleOption, StageAssignment } from "../ir.js";
import { parameterCount } from "../models/llama.js";
import { VERSION } from "../version.js";
import type { StageMemory } from "../cost/memory.js";
import type { Simulation } from "../simulate/simulate.js";
import { PLAN_FORMAT, SUMMARY_FORMAT, type Plan, type Summary } from "./schema.js";

/** `target` relative to `from`, with forward slashes, so a plan moves between machines. */
export function relativePath(from: string, target: string): string {
  const rel = path.relative(from, target);
  return rel === "" ? "." : rel.split(path.sep).join("/");
}

export function stageLayers(stage: Pick<StageAssignment, "blocks">): [number, number] {
  return [Math.floor(stage.blocks[0] / 2), Math.ceil(stage.blocks[1] / 2)];
}

/** The IR of a successful compile -> the plan. Every path becomes relative to `planDir`. */
export function buildPlan(ir: Required<Pick<Ir, "model" | "adapters" | "stages" | "schedule" | "job">> & Ir, planDir: string, jobFile: string | null): Plan {
  const rel = (p: string) => relativePath(planDir, p);
  const { model, adapters, stages, schedule, job } = ir;
  return {
    format: PLAN_FORMAT,
    compiler: { name: "loraflow", version: VERSION },
    source: { job: jobFile === null ? null : rel(jobFile), sha256: createHash("sha256").update(ir.source).digest("hex") },
    model: {
      name: model.name,
      arch: "llama",
      config: model.arch,
      dtype: model.dtype,
      parameters: parameterCount(model.arch),
      seed: model.seed,
      folder: model.folder === null ? null : rel(model.folder),
      weights: model.weights,
    },
    adapters: adapters.map((a) => ({
      name: a.name,
      rank: a.rank,
      alpha: a.alpha,
      scaling: a.scaling,
      dropout: a.dropout,
      rslora: a.rslora,
      targets: a.modules.map((m) => m.name),
      data: { path: rel(a.data), format: a.format, examples: a.examples },
      seqLen: a.seqLen,
      pack: a.pack,
      batch: a.batch,
      microBatch: a.microBatch,
      microBatchesPerStep: a.microBatchesPerStep,
      steps: a.steps,
      optimizer: a.optimizer,
      init: a.init === undefined ? null : rel(a.init),
      out: rel(a.out),
      seed: a.seed,
      saveEvery: a.saveEvery,
    })),
    cluster: {
      name: job.cluster.name,
      device: job.cluster.device,
      gpusPerNode: job.cluster.gpusPerNode,
      nodes: job.cluster.nodes,
      netBytesPerSecond: job.cluster.netBytesPerSecond,
    },
    recompute: job.plan.recompute,
    stages: stages.map((s) => ({
      index: s.index,
      device: s.device,
      node: Math.floor(s.device / job.cluster.gpusPerNode),
      blocks: s.blocks,
      layers: stageLayers(s),
      embedding: s.embedding,
      head: s.head,
    })),
    schedule,
  };
}

function imbalance(busy: number[]): number {
  const max = Math.max(0, ...busy);
  return max === 0 ? 0 : 1 - busy.reduce((a, b) => a + b, 0) / busy.length / max;
}

/**
 * summary.json: the contract other tools read. Busy time, makespan, bound and idle fraction come
 * from the simulator over the cost model (compiler/cost/model.ts), each stage's peak memory from
 * the memory plan (compiler/cost/memory.ts); capacities are the device's.
 */
export function buildSummary(plan: Plan, simulation: Simulation | undefined, memory: StageMemory[] | undefined, compileMillis: number, comparison?: Summary["comparison"]): Summary {
  const groups = plan.schedule.groups?.map((g) => g.map((i) => plan.adapters[i]!.name));
  return {
    format: SUMMARY_FORMAT,
    schedule: plan.schedule.name,
    stages: plan.stages.map((s) => ({
      index: s.index,
      device: s.device,
      layers: s.layers,
      embedding: s.embedding,
      head: s.head,
      memoryBytes: memory?.[s.index]?.totalBytes ?? 0,
      memoryCapacityBytes: plan.cluster.device.memoryBytes,
      busySeconds: simulation?.busySeconds[s.index] ?? 0,
    })),
    adapters: plan.adapters.map((a) => ({ name: a.name, steps: a.steps, microBatchesPerStep: a.microBatchesPerStep })),
    makespanSeconds: simulation?.makespanSeconds ?? 0,
    imbalance: imbalance(simulation?.busySeconds ?? []),
    lowerBoundSeconds: simulation?.lowerBoundSeconds ?? 0,
    idleFraction: simulation?.idleFraction ?? 0,
    tokensPerSecond: simulation && simulation.makespanSeconds > 0 ? plan.adapters.reduce((n, a) => n + a.steps * a.batch * a.seqLen, 0) / simulation.makespanSeconds : 0,
    compileMillis,
    ...(groups && { groups }),
    ...(comparison && { comparison }),
  };
}

export function comparisonRow(o: ScheduleOption): NonNullable<Summary["comparison"]>[number] {
  return {
    label: o.label,
    makespanSeconds: o.makespanSeconds ?? null,
    idleFraction: o.idleFraction ?? null,
    peakBytes: o.peakBytes,
    fits: o.fits,
    chosen: o.chosen,
    pruned: o.pruned === true,
  };
}
