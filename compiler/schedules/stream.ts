import type { ActionListBuilder } from "../plan/actions.js";

/**
 * One stage's actions for a stream of micro-batches pushed through the pipeline in order:
 * `warmup` forwards ahead, then forward and backward alternating, then the remaining backwards
 * (1F1B when warmup is p - 1 - s, GPipe when it is the whole stream). Each forward receives its
 * activations from the stage before and sends its own on; each backward receives its gradient
 * from the stage after and sends the input gradient back. `beforeForward` may put actions (an
 * optimizer step) ahead of a micro-batch's forward. The actions go onto `out`.
 */
export function streamActions(out: ActionListBuilder, ids: readonly number[], stage: number, stages: number, warmup: number, beforeForward?: (mb: number) => void): void {
  const forward = (mb: number) => {
    beforeForward?.(mb);
    if (stage > 0) out.push({ op: "RECV", what: "act", mb, peer: stage - 1 });
    out.push({ op: "F", mb });
    if (stage < stages - 1) out.push({ op: "SEND", what: "act", mb, peer: stage + 1 });
  };
  const backward = (mb: number) => {
    if (stage < stages - 1) out.push({ op: "RECV", what: "grad", mb, peer: stage + 1 });
    out.push({ op: "B", mb });
    if (stage > 0) out.push({ op: "SEND", what: "grad", mb, peer: stage - 1 });
  };
  const n = ids.length;
  const w = Math.min(warmup, n);
  for (let j = 0; j < w; j++) forward(ids[j]!);
  for (let j = 0; j < n - w; j++) {
    forward(ids[w + j]!);
    backward(ids[j]!);
  }
  for (let j = n - w; j < n; j++) backward(ids[j]!);
}
