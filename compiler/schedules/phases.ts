import type { ResolvedAdapter } from "../ir.js";

/**
 * Splits training into phases of identical rounds: a round gives every active adapter one
 * optimizer step, and a phase ends when its shortest adapter finishes. Adapters of 1000, 1000
 * and 400 steps give phases of 400 rounds (all three) and 600 rounds (the first two).
 */
export function phaseBoundaries(adapters: readonly ResolvedAdapter[]): { rounds: number; adapters: number[] }[] {
  const ends = [...new Set(adapters.map((a) => a.steps))].sort((a, b) => a - b);
  const phases: { rounds: number; adapters: number[] }[] = [];
  let done = 0;
  for (const end of ends) {
    const active = adapters.filter((a) => a.steps > done).map((a) => a.index);
    phases.push({ rounds: end - done, adapters: active });
    done = end;
  }
  return phases;
}
