/**
 * Splitting a chain of blocks into p contiguous, non-empty stages so that the slowest stage is
 * as fast as possible, with every stage within its memory: dynamic programming over
 * (stages used, blocks covered), O(p B^2) for B blocks. The first stage also runs the embedding,
 * the last the head; memory may depend on the stage's position (a 1F1B stage s keeps p - s
 * micro-batches in flight).
 */
export interface BalanceProblem {
  /** Seconds per round of each block. */
  blockSeconds: number[];
  embeddingSeconds: number;
  headSeconds: number;
  stages: number;
  /** Bytes stage `stage` of `stages` needs to hold blocks [first, last). */
  memory: (first: number, last: number, stage: number, stages: number) => number;
  capacity: number;
}

export interface Balance {
  /** Block boundaries: stage s runs blocks [cuts[s], cuts[s + 1]). */
  cuts: number[];
  stageSeconds: number[];
  bottleneckSeconds: number;
}

export function stageSeconds(problem: BalanceProblem, prefix: number[], first: number, last: number, stage: number): number {
  return prefix[last]! - prefix[first]! + (stage === 0 ? problem.embeddingSeconds : 0) + (stage === problem.stages - 1 ? problem.headSeconds : 0);
}

/** The best split, or undefined when no split fits in memory. */
export function balance(problem: BalanceProblem): Balance | undefined {
  const B = problem.blockSeconds.length;
  const p = problem.stages;
  if (p < 1 || p > B) return undefined;
  const prefix = [0];
  for (const c of problem.blockSeconds) prefix.push(prefix[prefix.length - 1]! + c);
  // best[s][i]: the smallest bottleneck covering blocks [0, i) with stages 0..s; from[s][i]: where stage s starts.
  const best = Array.from({ length: p }, () => new Array<number>(B + 1).fill(Infinity));
  const from = Array.from({ length: p }, () => new Array<number>(B + 1).fill(-1));
  for (let i = 1; i <= B - (p - 1); i++) {
    if (problem.memory(0, i, 0, p) <= problem.capacity) best[0]![i] = stageSeconds(problem, prefix, 0, i, 0);
  }
  for (let s = 1; s < p; s++) {
    const lastStage = s === p - 1;
    for (let i = s + 1; i <= B - (p - 1 - s); i++) {
      if (lastStage && i !== B) continue;
      for (let j = s; j < i; j++) {
        const before = best[s - 1]![j]!;
        if (before === Infinity) continue;
        const here = stageSeconds(problem, prefix, j, i, s);
        const candidate = Math.max(before, here);
        if (candidate < best[s]![i]! && problem.memory(j, i, s, p) <= problem.capacity) {
          best[s]![i] = candidate;
          from[s]![i] = j;
        }
      }
    }
  }
  const bottleneck = best[p - 1]![B]!;
  if (bottleneck === Infinity) return undefined;
  const cuts = [B];
  for (let s = p - 1, i = B; s > 0; s--) {
    i = from[s]![i]!;
    cuts.unshift(i);
  }
  cuts.unshift(0);
  const seconds = cuts.slice(0, -1).map((c, s) => stageSeconds(problem, prefix, c, cuts[s + 1]!, s));
  return { cuts, stageSeconds: seconds, bottleneckSeconds: bottleneck };
}
