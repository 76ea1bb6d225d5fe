import type { DraftOp, ProgramDraft } from "./builder.js";

/**
 * `recompute true`: each layer block's backward starts by re-running the block's forward from
 * its stashed input, into workspace tensors, so that the stash keeps only block inputs (and the
 * head's). Only the forward ops whose results the block's backward reads are re-run.
 */
export function recomputeBlocks(d: ProgramDraft): void {
  const groups = new Map<number, DraftOp[]>();
  const order: (number | DraftOp)[] = [];
  for (const op of d.backward) {
    if (typeof op.block !== "number") {
      order.push(op);
      continue;
    }
    if (!groups.has(op.block)) {
      groups.set(op.block, []);
      order.push(op.block);
    }
    groups.get(op.block)!.push(op);
  }
  const rebuilt: DraftOp[] = [];
  for (const item of order) {
    if (typeof item !== "number") {
      rebuilt.push(item);
      continue;
    }
    const block = item;
    const group = groups.get(block)!;
    const own = (t: number) => {
      const o = d.tensors[t]!.origin;
      return o.program === "F" && o.block === block && d.tensors[t]!.place === undefined;
    };
    // Clones of the block's forward tensors, made on first use.
    const clone = new Map<number, number>();
    const cloneOf = (t: number): number => {
      if (!own(t)) return t;
      let c = clone.get(t);
      if (c === undefined) {
        const src = d.tensors[t]!;
        c = d.tensor(src.name, src.shape, src.dtype, { program: "B", block });
        clone.set(t, c);
      }
      return c;
    };
    const forward = d.forward.filter((op) => op.block === block);
    // Which forward ops the group needs, walking them last to first.
    const needed = new Set<number>();
    for (const op of group) for (const t of op.in) if (own(t)) needed.add(t);
    const rerun: DraftOp[] = [];
    for (let i = forward.length - 1; i >= 0; i--) {
      const op = forward[i]!;
      if (!op.out.some((t) => needed.has(t))) continue;
      for (const t of op.in) if (own(t)) needed.add(t);
      rerun.push(op);
    }
    rerun.reverse();
    const remap = (op: DraftOp): DraftOp => ({
      ...op,
      in: op.in.map(cloneOf),
      out: op.out.map(cloneOf),
      ...(op.scratch && { scratch: op.scratch.map(cloneOf) }),
    });
    rebuilt.push(...rerun.map(remap), ...group.map(remap));
  }
  d.backward = rebuilt;
}
