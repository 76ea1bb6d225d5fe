import { createHash } from "node:crypto";
import * as path from "node:path";
import type { Ir, ScheduleOption, StageAssignment } from "../ir.js";
import { parameterCount } from "../models/llama.js";
import { VERSION } from "../version.js";
import type { StageMemory } from "../cost/memory.js";
import type { Simulation } from "../simulate/simulate.js";
import { lowerPrograms } from "../programs/lower.js";
import { planPathProblem, type PlanLink } from "./paths.js";
import { PLAN_FORMAT, SUMMARY_FORMAT, type Plan, type Summary } from "./schema.js";

export function stageLayers(stage: Pick<StageAssignment, "blocks">): [number, number] {
  return [Math.floor(stage.blocks[0] / 2), Math.ceil(stage.blocks[1] / 2)];
}

/**
 * `target` as the plan records it, relative to `planDir`: its own relative path when inside
 * the folder, else `link` (a path inside the folder), with the link to make added to `links`.
 */
function planPath(planDir: string, target: string, link: string, links: PlanLink[]): string {
  const rel = path.relative(planDir, target).split(path.sep).join("/");
  if (rel === "") return ".";
  if (planPathProblem(rel) === undefined) return rel;
  links.push({ path: link, target });
  return link;
}

/**
 * The IR of a successful compile -> the plan, and the links to make in its folder. Every path
 * becomes relative to `planDir` and stays inside it: what lies outside is recorded as a link in
 * `inputs/` (data, model, init) or `outputs/` (out folders), which the writer of the plan makes.
 */
export function buildPlan(ir: Required<Pick<Ir, "model" | "adapters" | "stages" | "schedule" | "job">> & Ir, planDir: string, jobFile: string | null): { plan: Plan; links: PlanLink[] } {
  const links: PlanLink[] = [];
  const { model, adapters, stages, schedule, job } = ir;
  const plan: Plan = {
    format: PLAN_FORMAT,
    compiler: { name: "loraflow", version: VERSION },
    source: { job: jobFile === null ? null : path.basename(jobFile), sha256: createHash("sha256").update(ir.source).digest("hex") },
    model: {
      name: model.name,
      arch: "llama",
      config: model.arch,
      dtype: model.dtype,
      parameters: parameterCount(model.arch),
      seed: model.seed,
      folder: model.folder === null ? null : planPath(planDir, model.folder, "inputs/model", links),
      tokenizer:
        model.tokenizer === null ? null : model.tokenizer === model.folder ? (model.folder === null ? null : planPath(planDir, model.folder, "inputs/model", [])) : planPath(planDir, model.tokenizer, "inputs/tokenizer", links),
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
      data: {
        path: a.data === null ? null : planPath(planDir, a.data, `inputs/${a.name}/${path.basename(a.data)}`, links),
        format: a.format,
        examples: a.examples,
        evalSplit: a.evalSplit,
        evalEvery: a.evalEvery,
        skipBadLines: a.skipBadLines,
      },
      seqLen: a.seqLen,
      pack: a.pack,
      batch: a.batch,
      microBatch: a.microBatch,
      microBatchesPerStep: a.microBatchesPerStep,
      steps: a.steps,
      optimizer: a.optimizer,
      init: a.init === undefined ? null : planPath(planDir, a.init, `inputs/${a.name}/init`, links),
      out: planPath(planDir, a.out, `outputs/${a.name}`, links),
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
    programs: ir.programs ?? lowerPrograms({ arch: model.arch, dtype: model.dtype, recompute: job.plan.recompute, stages, adapters, phases: schedule.phases }),
  };
  return { plan, links };
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
