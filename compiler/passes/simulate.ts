import { loraParameters } from "../cost/memory.js";
import { DTYPE_BYTES, LINK_LATENCY_SECONDS, seconds, shapeKey, stageSeconds } from "../cost/model.js";
import type { Ir, Pass, Schedule } from "../ir.js";
import { phaseTimeline, simulate as run, type PhaseCosts } from "../simulate/simulate.js";

/** Seconds of every action of `schedule`, phase by phase. */
export function priceSchedule(ir: Ir, schedule: Schedule): PhaseCosts[] {
  const { model, adapters, stages, job } = ir as Required<Ir>;
  const device = job.cluster.device;
  const bytes = DTYPE_BYTES[model.dtype];
  // Micro-batches with the same parts cost the same: price each shape once per stage.
  const priced = new Map<string, { f: number; b: number; t: number }>();
  const costs: PhaseCosts[] = schedule.phases.map((phase) => {
    const c: PhaseCosts = { forward: [], backward: [], step: [], transfer: [] };
    for (const stage of stages) {
      const f: number[] = [];
      const b: number[] = [];
      const t: number[] = [];
      for (const mb of phase.microBatches) {
        const key = `${stage.index}:${shapeKey(mb)}`;
        let price = priced.get(key);
        if (!price) {
          const w = stageSeconds(model.arch, stage.blocks, stage.head, mb, adapters, bytes, device);
          // Activations [T, C] to the next stage (gradients come back the same size).
          const T = mb.parts.reduce((n, p) => n + p.sequences * adapters[p.adapter]!.seqLen, 0);
          const sameNode = Math.floor(stage.device / job.cluster.gpusPerNode) === Math.floor((stage.device + 1) / job.cluster.gpusPerNode);
          const transfer = sameNode
            ? (T * model.arch.hidden * bytes) / device.link.bytesPerSecond + LINK_LATENCY_SECONDS.intraNode
            : (T * model.arch.hidden * bytes) / job.cluster.netBytesPerSecond + LINK_LATENCY_SECONDS.interNode;
          price = { f: w.forward, b: w.backward, t: transfer };
          priced.set(key, price);
        }
        f[mb.id] = price.f;
        b[mb.id] = price.b;
        t[mb.id] = price.t;
      }
      c.forward.push(f);
      c.backward.push(b);
      c.transfer.push(t);
      // AdamW reads and writes weights, gradients and two moments in fp32: about 7 passes.
      c.step.push(adapters.map((a) => seconds({ flops: 0, bytes: 7 * 4 * loraParameters(a, stage.blocks) }, device)));
    }
    return c;
  });
  return costs;
}

/**
 * Costs every action of the verified schedule and simulates it: makespan, busy and idle time
 * per stage, the lower bound. The results fill summary.json.
 */
export const simulate: Pass = {
  name: "simulate",
  needs: ["schedule", "stages", "adapters", "model", "job"],
  run(ir) {
    // `auto` may have simulated this very schedule already.
    const done = ir.simulated?.schedule === ir.schedule ? ir.simulated : undefined;
    const costs = done?.costs ?? priceSchedule(ir, ir.schedule!);
    const phases = ir.schedule!.phases;
    // What the picture shows: the first phase's first two rounds.
    const timeline = phaseTimeline(ir.stages!.length, phases[0]!, costs[0]!, 2);
    return { ...ir, simulation: done?.simulation ?? run(ir.stages!.length, phases, costs), timeline };
  },
};
