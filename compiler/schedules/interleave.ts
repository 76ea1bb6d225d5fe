import type { MicroBatch, Phase, ResolvedAdapter } from "../ir.js";
import { ActionListBuilder } from "../plan/actions.js";
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
 *
 * `groups` fuses adapters (LoRAFusion's idea): the adapters of a group share every micro-batch
 * (micro-batch j carries each member's j-th) and step together, and the stream interleaves the
 * groups in the order given. Without it every adapter is a group of its own, in index order.
 */
export function interleavedSchedule(adapters: readonly ResolvedAdapter[], stages: number, groups?: readonly (readonly number[])[]): Phase[] {
  const phases: Phase[] = [];
  const order = groups ?? adapters.map((a) => [a.index]);
  for (const { rounds, adapters: active } of phaseBoundaries(adapters)) {
    const live = order.map((g) => g.filter((i) => active.includes(i)).map((i) => adapters[i]!)).filter((g) => g.length > 0);
    const perStep = live.reduce((n, g) => n + depth(g), 0);
    const chainable = live.every((g) => perStep - depth(g) >= stages - 1);
    const steps = chainable ? Math.max(1, Math.min(rounds, Math.floor(MAX_STREAM / perStep))) : 1;
    const whole = Math.floor(rounds / steps);
    phases.push(round(live, active, stages, steps, whole));
    if (rounds % steps > 0) phases.push(round(live, active, stages, rounds % steps, 1));
  }
  return phases;
}

/** Micro-batches a group runs per step: its deepest member's (the others sit out the rest). */
const depth = (group: readonly ResolvedAdapter[]) => Math.max(...group.map((a) => a.microBatchesPerStep));

function round(groups: ResolvedAdapter[][], active: number[], stages: number, steps: number, rounds: number): Phase {
  const microBatches: MicroBatch[] = [];
  // The first micro-batch of each group's later steps: the updates of its previous step go
  // right before its forward.
  const opens = new Map<number, ResolvedAdapter[]>();
  for (let j = 0; j < steps; j++) {
    for (const group of groups) {
      for (let i = 0; i < depth(group); i++) {
        const id = microBatches.length;
        const parts = group.filter((a) => i < a.microBatchesPerStep).map((a) => ({ adapter: a.index, step: j, index: i, sequences: a.microBatch }));
        microBatches.push({ id, parts });
        if (i === 0 && j > 0) opens.set(id, group);
      }
    }
  }
  const ids = microBatches.map((m) => m.id);
  const actions = Array.from({ length: stages }, (_, s) => {
    const out = new ActionListBuilder();
    const beforeForward = (mb: number) => {
      for (const a of opens.get(mb) ?? []) out.push({ op: "STEP", adapter: a.index });
    };
    streamActions(out, ids, s, stages, stages - 1 - s, beforeForward);
    for (const group of groups) for (const a of group) out.push({ op: "STEP", adapter: a.index });
    return out.list();
  });
  return { rounds, stepsPerRound: steps, adapters: active, microBatches, actions };
}
