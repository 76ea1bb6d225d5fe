import type { MicroBatch, Phase, ResolvedAdapter } from "../ir.js";
import { formatAction } from "../plan/actions.js";
import { phaseBoundaries } from "./phases.js";
import { streamActions } from "./stream.js";

/** Longest stream of micro-batches in one round: keeps plans small, fill and drain negligible. */
export const MAX_STREAM = 256;

/**
 * LoRA-aware interleaving (mLoRA's LoRAPP): the micro-batches of every active adapter go through
 * the pipeline as one 1F1B stream, adapter after adapter, step after step, with no flush between
 * steps. A stage applies an adapter's update lazily, just before that adapter's next forward
 * there (STEP is a collective: stepping right after the last backward would make the later
 * stages wait for the first to finish that step). The adapter's next step comes round only after
 * the other adapters' micro-batches, so its forwards never wait for its own update, provided
 * those others number at least p - 1 (then a round chains many steps; otherwise it holds one).
 * Fill and drain happen once per round instead of once per step.
 */
export function interleavedSchedule(adapters: readonly ResolvedAdapter[], stages: number): Phase[] {
  const phases: Phase[] = [];
  for (const { rounds, adapters: active } of phaseBoundaries(adapters)) {
    const members = active.map((i) => adapters[i]!);
    const perStep = members.reduce((n, a) => n + a.microBatchesPerStep, 0);
    const chainable = members.every((a) => perStep - a.microBatchesPerStep >= stages - 1);
    const steps = chainable ? Math.max(1, Math.min(rounds, Math.floor(MAX_STREAM / perStep))) : 1;
    const whole = Math.floor(rounds / steps);
    phases.push(round(members, active, stages, steps, whole));
    if (rounds % steps > 0) phases.push(round(members, active, stages, rounds % steps, 1));
  }
  return phases;
}

function round(members: ResolvedAdapter[], active: number[], stages: number, steps: number, rounds: number): Phase {
  const microBatches: MicroBatch[] = [];
  // The first micro-batch of each adapter's later steps: the update of its previous step goes
  // right before its forward.
  const opens = new Map<number, number>();
  for (let j = 0; j < steps; j++) {
    for (const a of members) {
      for (let i = 0; i < a.microBatchesPerStep; i++) {
        const id = microBatches.length;
        microBatches.push({ id, parts: [{ adapter: a.index, step: j, index: i, sequences: a.microBatch }] });
        if (i === 0 && j > 0) opens.set(id, a.index);
      }
    }
  }
  const ids = microBatches.map((m) => m.id);
  const actions = Array.from({ length: stages }, (_, s) => {
    const beforeForward = (mb: number) => {
      const adapter = opens.get(mb);
      return adapter === undefined ? [] : [formatAction({ op: "STEP", adapter })];
    };
    const out = streamActions(ids, s, stages, stages - 1 - s, beforeForward);
    for (const a of members) out.push(formatAction({ op: "STEP", adapter: a.index }));
    return out;
  });
  return { rounds, stepsPerRound: steps, adapters: active, microBatches, actions };
}
