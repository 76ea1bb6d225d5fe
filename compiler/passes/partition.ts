import { formatBytes } from "../../dsl/index.js";
import { adapterStateBytes, baseWeightBytes, stashBytes, workspaceBytes } from "../cost/memory.js";
import { DTYPE_BYTES, stageSeconds } from "../cost/model.js";
import type { Ir, MicroBatch, Pass, ResolvedAdapter, StageAssignment } from "../ir.js";
import type { ScheduleName } from "../job.js";
import { MAX_STREAM } from "../schedules/interleave.js";
import { balance, type Balance, type BalanceProblem } from "../partition/balance.js";

/**
 * How much longer than its bottleneck stage's work a pipeline of p stages takes, by schedule: a
 * flush of m micro-batches costs (m + p - 1) / m; 1F1B and GPipe flush per adapter step, `batch`
 * once per fused step; an interleaved stream (mlora, and auto with several adapters, which
 * interleaves) fills and drains once per round of S micro-batches, (S + p - 1) / S, provided the
 * other adapters cover the pipeline's depth (else its rounds are single steps).
 */
export function fillFactor(schedule: ScheduleName, adapters: readonly ResolvedAdapter[], p: number): number {
  const perStep = adapters.reduce((n, a) => n + a.microBatchesPerStep, 0);
  const depth = Math.max(...adapters.map((a) => a.microBatchesPerStep));
  if ((schedule === "mlora" || schedule === "auto") && adapters.length > 1) {
    const chainable = adapters.every((a) => perStep - a.microBatchesPerStep >= p - 1);
    const stream = chainable ? Math.min(MAX_STREAM, perStep * Math.max(...adapters.map((a) => a.steps))) : perStep;
    return (stream + p - 1) / stream;
  }
  if (schedule === "batch") return (depth + p - 1) / depth;
  return (perStep + adapters.length * (p - 1)) / perStep;
}

/**
 * Splits the model's layer blocks (attention and MLP halves of layers) over the stages so the
 * slowest stage is as fast as it can be, each stage within its device's memory (weights, adapter
 * state, and the activations of the micro-batches a 1F1B stage keeps in flight). The embedding
 * runs on the first stage, the head on the last, and both are priced. `stages auto` tries every
 * count up to the devices and keeps the one with the shortest estimate: the bottleneck stage's
 * work times the schedule's fill factor.
 * Stage i runs on device i.
 */
export const partition: Pass = {
  name: "partition",
  needs: ["model", "job", "adapters"],
  run(ir, ctx) {
    const { model, job, adapters } = ir as Required<Ir>;
    const { cluster, plan } = job;
    const devices = cluster.gpusPerNode * cluster.nodes;
    const blocks = 2 * model.arch.layers;
    const at = plan.spans["stages"] ?? plan.span ?? cluster.span;
    if (plan.stages !== "auto" && plan.stages > devices) {
      ctx.report("tooManyStages", `${plan.stages} stages need ${plan.stages} devices; the cluster has ${devices} (${cluster.nodes} x ${cluster.gpusPerNode})`, at);
      return ir;
    }
    if (plan.stages !== "auto" && plan.stages > blocks) {
      ctx.report("tooManyStages", `${plan.stages} stages for ${model.arch.layers} layers would leave a stage without a layer half`, at);
      return ir;
    }

    const bytes = DTYPE_BYTES[model.dtype];
    const device = cluster.device;
    // One micro-batch of each adapter, alone. Over the job an adapter runs microBatchesPerStep of
    // them per step, for its steps: weighting by steps balances the whole job's work, so an
    // adapter that stops early does not pull the split towards its shape.
    const shapes: { mb: MicroBatch; count: number }[] = adapters.map((a) => ({
      mb: { id: 0, parts: [{ adapter: a.index, step: 0, index: 0, sequences: a.microBatch }] },
      count: a.microBatchesPerStep * a.steps,
    }));
    const one = (first: number, last: number, head: boolean): number =>
      shapes.reduce((t, { mb, count }) => {
        const w = stageSeconds(model.arch, [first, last], head, mb, adapters, bytes, device);
        return t + count * (w.forward + w.backward);
      }, 0);
    const blockSeconds = Array.from({ length: blocks }, (_, b) => one(b, b + 1, false));
    const headSeconds = one(0, 0, true);

    // Memory by prefix sums, so the search can ask for any range in constant time.
    const probe = (b: number, head: boolean): StageAssignment => ({ index: 0, device: 0, blocks: [b, b + 1], embedding: false, head });
    // A fused (`batch`) micro-batch carries every adapter's rows; otherwise the largest adapter's.
    const stashOf = (stage: StageAssignment) => {
      const each = shapes.map(({ mb }) => stashBytes(model.arch, stage, mb, adapters, bytes, plan.recompute));
      return plan.schedule === "batch" ? each.reduce((a, b) => a + b, 0) : Math.max(...each);
    };
    const fixed: number[] = [0];
    const stash: number[] = [0];
    for (let b = 0; b < blocks; b++) {
      fixed.push(fixed[b]! + baseWeightBytes(model.arch, probe(b, false), bytes) + adapterStateBytes(adapters, [b, b + 1]));
      stash.push(stash[b]! + stashOf(probe(b, false)));
    }
    const embedding = baseWeightBytes(model.arch, { index: 0, device: 0, blocks: [0, 0], embedding: true, head: false }, bytes);
    const headWeights = baseWeightBytes(model.arch, { index: 0, device: 0, blocks: [0, 0], embedding: false, head: true }, bytes);
    const headStash = stashOf({ index: 0, device: 0, blocks: [0, 0], embedding: false, head: true });
    const depth = Math.max(...adapters.map((a) => a.microBatchesPerStep));
    // Micro-batches a stage keeps in flight: GPipe all of a step's; flushing 1F1B at most p - s of
    // them; an interleaved stream (mlora, and auto, which may pick it) p - s.
    const inFlight = (s: number, p: number) =>
      plan.schedule === "gpipe" ? depth : plan.schedule === "mlora" || plan.schedule === "auto" ? p - s : Math.min(p - s, depth);
    // The block being computed needs its workspace (cost/memory.ts): every block of a kind is the
    // same size, so one attention and one MLP block tell it for any range.
    const workspaceOf = (head: boolean) => {
      const each = shapes.map(({ mb }) => workspaceBytes(model.arch, { ...probe(0, head), blocks: [0, 2] }, mb, adapters, bytes));
      return plan.schedule === "batch" ? each.reduce((a, b) => a + b, 0) : Math.max(...each);
    };
    const workspace = workspaceOf(false);
    const headWorkspace = workspaceOf(true);
    const memory: BalanceProblem["memory"] = (first, last, s, p) =>
      fixed[last]! - fixed[first]! + inFlight(s, p) * (stash[last]! - stash[first]!) + (s === 0 ? embedding : 0) +
      (s === p - 1 ? headWeights + inFlight(s, p) * headStash + headWorkspace : workspace);
    const problem = (p: number): BalanceProblem => ({ blockSeconds, embeddingSeconds: 0, headSeconds, stages: p, memory, capacity: device.memoryBytes });

    let chosen: Balance | undefined;
    if (plan.stages === "auto") {
      let bestTime = Infinity;
      for (let p = 1; p <= Math.min(devices, blocks); p++) {
        const b = balance(problem(p));
        if (!b) continue;
        const estimate = b.bottleneckSeconds * fillFactor(plan.schedule, adapters, p);
        if (estimate < bestTime * (1 - 1e-9)) {
          bestTime = estimate;
          chosen = b;
        }
      }
    } else chosen = balance(problem(plan.stages));

    if (!chosen) {
      const p = plan.stages === "auto" ? Math.min(devices, blocks) : plan.stages;
      const least = memory(0, blocks, 0, 1) / p;
      ctx.report(
        "doesNotFit",
        `no split of the model over ${plan.stages === "auto" ? `up to ${p}` : p} stage${p === 1 ? "" : "s"} fits in ${formatBytes(device.memoryBytes)} per ${device.name} ` +
          `(the whole job needs about ${formatBytes(least)} per stage even if spread evenly); try ${plan.recompute ? "" : "`recompute true`, "}more devices, or a smaller micro_batch`,
        at,
      );
      return ir;
    }
    const stages: StageAssignment[] = chosen.cuts.slice(0, -1).map((first, s) => ({
      index: s,
      device: s,
      blocks: [first, chosen!.cuts[s + 1]!],
      embedding: s === 0,
      head: s === chosen!.cuts.length - 2,
    }));
    return { ...ir, stages };
  },
};
