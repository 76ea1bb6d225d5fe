import type { MicroBatch, Phase, ResolvedAdapter } from "../ir.js";
import { ActionListBuilder } from "../plan/actions.js";
import { phaseBoundaries } from "./phases.js";
import { streamActions } from "./stream.js";

/**
 * A flush unit: micro-batches pushed through the pipeline together, then the optimizer steps
 * of the adapters they train. Every stage finishes a unit before it starts the next.
 */
interface Unit {
  microBatches: MicroBatch[];
  steps: number[];
}

export type Interleave = "1f1b" | "gpipe";

/** One stage's actions for one unit: its micro-batches (1F1B or GPipe), then the unit's steps. */
function stageActions(out: ActionListBuilder, unit: Unit, stage: number, stages: number, interleave: Interleave): void {
  const ids = unit.microBatches.map((m) => m.id);
  const warmup = interleave === "gpipe" ? ids.length : stages - 1 - stage;
  streamActions(out, ids, stage, stages, warmup);
  for (const adapter of unit.steps) out.push({ op: "STEP", adapter });
}

function microBatchesOf(adapter: ResolvedAdapter, nextId: () => number): MicroBatch[] {
  return Array.from({ length: adapter.microBatchesPerStep }, (_, index) => ({
    id: nextId(),
    parts: [{ adapter: adapter.index, step: 0, index, sequences: adapter.microBatch }],
  }));
}

/**
 * Flush-per-step schedules. `fused` false: adapters one after another, each step its own unit
 * (1F1B or GPipe inside). `fused` true (`batch`): micro-batch j of every active adapter share one
 * fused micro-batch, all adapters step together after one flush.
 */
export function flushSchedule(adapters: readonly ResolvedAdapter[], stages: number, interleave: Interleave, fused: boolean): Phase[] {
  return phaseBoundaries(adapters).map(({ rounds, adapters: active }) => {
    let id = 0;
    const nextId = () => id++;
    const members = active.map((i) => adapters[i]!);
    let units: Unit[];
    if (fused) {
      const depth = Math.max(...members.map((a) => a.microBatchesPerStep));
      const microBatches: MicroBatch[] = [];
      for (let j = 0; j < depth; j++) {
        const parts = members.filter((a) => j < a.microBatchesPerStep).map((a) => ({ adapter: a.index, step: 0, index: j, sequences: a.microBatch }));
        microBatches.push({ id: nextId(), parts });
      }
      units = [{ microBatches, steps: active }];
    } else {
      units = members.map((a) => ({ microBatches: microBatchesOf(a, nextId), steps: [a.index] }));
    }
    const actions = Array.from({ length: stages }, (_, s) => {
      const out = new ActionListBuilder();
      for (const u of units) stageActions(out, u, s, stages, interleave);
      return out.list();
    });
    return { rounds, stepsPerRound: 1, adapters: active, microBatches: units.flatMap((u) => u.microBatches), actions };
  });
}
