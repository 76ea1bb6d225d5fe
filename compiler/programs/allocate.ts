import type { DraftOp, ProgramDraft } from "./builder.js";
import { TENSOR_DTYPE_BYTES, type ProgramOp, type ProgramTensor, type StageProgram } from "./types.js";

/** Every tensor starts on this boundary (what vector loads and cuBLAS want). */
export const ALIGN = 256;

export const alignUp = (n: number): number => Math.ceil(n / ALIGN) * ALIGN;

export function tensorBytes(t: Pick<ProgramTensor, "shape" | "dtype">): number {
  return t.shape.reduce((a, b) => a * b, 1) * TENSOR_DTYPE_BYTES[t.dtype];
}

/** A first-fit allocator over intervals: what is live at once never overlaps. */
export class IntervalAllocator {
  private live: { offset: number; size: number; end: number }[] = [];
  peak = 0;

  /** Frees what ended before `now`. */
  advance(now: number): void {
    if (this.live.some((b) => b.end < now)) this.live = this.live.filter((b) => b.end >= now);
  }

  /** Places `size` bytes live until (and including) `end`; returns the offset. */
  place(size: number, end: number): number {
    const need = alignUp(Math.max(size, 1));
    // `live` stays sorted by offset: the first gap that holds `need` wins.
    let offset = 0;
    let at = 0;
    for (; at < this.live.length; at++) {
      const b = this.live[at]!;
      if (b.offset - offset >= need) break;
      offset = Math.max(offset, b.offset + b.size);
    }
    this.live.splice(at, 0, { offset, size: need, end });
    this.peak = Math.max(this.peak, offset + need);
    return offset;
  }
}

/** Offsets for the work tensors of one op list, by liveness: first touch to last touch. */
function allocateWork(ops: readonly ProgramOp[], isWork: (t: number) => boolean, sizeOf: (t: number) => number, offsets: Map<number, number>): number {
  const last = new Map<number, number>();
  ops.forEach((op, i) => forEachTouched(op, (t) => isWork(t) && last.set(t, i)));
  const alloc = new IntervalAllocator();
  ops.forEach((op, i) => {
    alloc.advance(i);
    forEachTouched(op, (t) => {
      if (isWork(t) && !offsets.has(t)) offsets.set(t, alloc.place(sizeOf(t), last.get(t)!));
    });
  });
  return alloc.peak;
}

function forEachTouched(op: ProgramOp, fn: (t: number) => unknown): void {
  for (const t of op.in) fn(t);
  for (const t of op.out) fn(t);
  if (op.scratch) for (const t of op.scratch) fn(t);
}

const strip = ({ block: _block, ...op }: DraftOp): ProgramOp => op;

/**
 * Places every tensor of a drafted program pair: forward tensors the backward reads go to the
 * stash slot, laid end to end (all of them live from F to B); the other forward tensors and all
 * backward tensors go to the workspace, where each program's temporaries share memory by liveness.
 * Tensors no op touches are dropped and the rest renumbered.
 */
export function placeTensors(d: ProgramDraft, cls: number): StageProgram {
  const readByBackward = new Set<number>();
  for (const op of d.backward) for (const t of op.in) readByBackward.add(t);
  const used = new Set<number>();
  for (const list of [d.forward, d.backward]) for (const op of list) forEachTouched(op, (t) => used.add(t));
  const place = (t: number): ProgramTensor["place"] => {
    const x = d.tensors[t]!;
    if (x.place !== undefined) return x.place;
    return x.origin.program === "F" && readByBackward.has(t) ? "stash" : "work";
  };
  const size = (t: number) => tensorBytes(d.tensors[t]!);
  const offsets = new Map<number, number>();
  let stashBytes = 0;
  for (const t of d.tensors.keys()) {
    if (!used.has(t) || place(t) !== "stash") continue;
    offsets.set(t, stashBytes);
    stashBytes += alignUp(size(t));
  }
  let messageBytes = 0;
  for (const t of d.tensors.keys()) {
    const p = place(t);
    if (used.has(t) && p !== "stash" && p !== "work") {
      offsets.set(t, 0);
      messageBytes = Math.max(messageBytes, size(t));
    }
  }
  const isWork = (program: "F" | "B") => (t: number) => place(t) === "work" && d.tensors[t]!.origin.program === program;
  const forwardWork = allocateWork(d.forward, isWork("F"), size, offsets);
  const backwardWork = allocateWork(d.backward, isWork("B"), size, offsets);
  // Renumber densely in first-use order.
  const ids = new Map<number, number>();
  const tensors: ProgramTensor[] = [];
  const id = (t: number) => {
    let n = ids.get(t);
    if (n === undefined) {
      n = tensors.length;
      ids.set(t, n);
      const x = d.tensors[t]!;
      tensors.push({ name: x.name, place: place(t), offset: offsets.get(t)!, shape: x.shape, dtype: x.dtype });
    }
    return n;
  };
  const renumber = (op: ProgramOp): ProgramOp => ({
    ...op,
    in: op.in.map(id),
    out: op.out.map(id),
    ...(op.scratch && { scratch: op.scratch.map(id) }),
  });
  const forward = d.forward.map(strip).map(renumber);
  const backward = d.backward.map(strip).map(renumber);
  return { class: cls, tensors, forward, backward, stashBytes, messageBytes, workBytes: Math.max(forwardWork, backwardWork) };
}
