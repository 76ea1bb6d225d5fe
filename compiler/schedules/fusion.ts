import type { ResolvedAdapter, Schedule } from "../ir.js";

/** Tokens one micro-batch of the adapter carries. */
const tokens = (a: ResolvedAdapter) => a.microBatch * a.seqLen;

/**
 * The order in which fused groups are formed: adapters that train as long, with as many
 * micro-batches per step and as many tokens per micro-batch, side by side, so that a group
 * pads little and stays together across phases.
 */
export function fusionOrder(adapters: readonly ResolvedAdapter[]): ResolvedAdapter[] {
  return [...adapters].sort((a, b) => b.steps - a.steps || a.microBatchesPerStep - b.microBatchesPerStep || tokens(b) - tokens(a) || a.index - b.index);
}

/** Group sizes `auto` tries, smallest first: fusing more trades pipeline granularity for kernel size. */
export function fusionSizes(n: number): number[] {
  const sizes: number[] = [];
  for (let g = 2; g < n; g *= 2) sizes.push(g);
  if (n >= 2) sizes.push(n);
  return sizes;
}

/** `order` cut into consecutive groups of `size` (the last may be smaller), as adapter indices. */
export function chunk(order: readonly ResolvedAdapter[], size: number): number[][] {
  const groups: number[][] = [];
  for (let i = 0; i < order.length; i += size) groups.push(order.slice(i, i + size).map((a) => a.index));
  return groups;
}

/**
 * Interleaving orders besides the declared one: heaviest micro-batches first, which lets a
 * stage that waits on a long forward fill in with the short ones behind it. Only when the
 * adapters differ in tokens per micro-batch.
 */
export function interleavingOrders(adapters: readonly ResolvedAdapter[]): number[][][] {
  const heavy = [...adapters].sort((a, b) => tokens(b) - tokens(a) || a.index - b.index);
  if (heavy.every((a, i) => a.index === adapters[i]!.index)) return [];
  return [heavy.map((a) => [a.index])];
}

/** "mlora", or "mlora fused a+b c+d" / "mlora ordered c b a" when groups shape the stream. */
export function scheduleLabel(schedule: Pick<Schedule, "name" | "groups">, adapters: readonly Pick<ResolvedAdapter, "name">[]): string {
  if (!schedule.groups) return schedule.name;
  const fused = schedule.groups.some((g) => g.length > 1);
  return `${schedule.name} ${fused ? "fused" : "ordered"} ${schedule.groups.map((g) => g.map((i) => adapters[i]!.name).join("+")).join(" ")}`;
}

/**
 * The groups the job declared with `fuse`, in declaration order (an adapter without one is a
 * group of its own), or undefined when no adapter declared one.
 */
export function declaredGroups(adapters: readonly ResolvedAdapter[]): number[][] | undefined {
  if (adapters.every((a) => a.fuse === undefined)) return undefined;
  const groups: number[][] = [];
  const byName = new Map<string, number[]>();
  for (const a of adapters) {
    if (a.fuse === undefined) {
      groups.push([a.index]);
      continue;
    }
    let group = byName.get(a.fuse);
    if (!group) {
      byName.set(a.fuse, (group = []));
      groups.push(group);
    }
    group.push(a.index);
  }
  // Every adapter alone, in declaration order: the default stream.
  return groups.every((g) => g.length === 1) ? undefined : groups;
}
