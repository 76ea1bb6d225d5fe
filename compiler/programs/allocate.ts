import { forEachTouched, type Block, type DraftOp, type ProgramDraft } from "./builder.js";
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
function allocateWork(ops: readonly ProgramOp[], isWork: Uint8Array, sizes: Float64Array, offsets: Float64Array): number {
  const last = new Int32Array(isWork.length).fill(-1);
  ops.forEach((op, i) => forEachTouched(op, (t) => {
    if (isWork[t]) last[t] = i;
  }));
  const alloc = new IntervalAllocator();
  ops.forEach((op, i) => {
    alloc.advance(i);
    forEachTouched(op, (t) => {
      if (isWork[t] && offsets[t]! < 0) offsets[t] = alloc.place(sizes[t]!, last[t]!);
    });
  });
  return alloc.peak;
}

const PLACE_STASH = 1;
const PLACE_WORK_F = 2;
const PLACE_WORK_B = 3;
const PLACE_MESSAGE = 4;

/**
 * Places every tensor of a drafted program pair: forward tensors the backward reads go to the
 * stash slot, laid end to end (all of them live from F to B); the other forward tensors and all
 * backward tensors go to the workspace, where each program's temporaries share memory by liveness.
 * Tensors no op touches are dropped and the rest renumbered.
 */
export function placeTensors(d: ProgramDraft, cls: number): StageProgram {
  return placeTagged(d, cls).program;
}

/** A placed program with the block whose op (or adjoint) made each of its tensors. */
export function placeTagged(d: ProgramDraft, cls: number): { program: StageProgram; tensorBlocks: Block[] } {
  const n = d.tensors.length;
  const readByBackward = new Uint8Array(n);
  for (const op of d.backward) for (const t of op.in) readByBackward[t] = 1;
  const used = new Uint8Array(n);
  for (const list of [d.forward, d.backward]) for (const op of list) forEachTouched(op, (t) => (used[t] = 1));
  const kind = new Uint8Array(n);
  const sizes = new Float64Array(n);
  for (let t = 0; t < n; t++) {
    const x = d.tensors[t]!;
    sizes[t] = tensorBytes(x);
    kind[t] = x.place !== undefined && x.place !== "stash" && x.place !== "work" ? PLACE_MESSAGE : x.origin.program === "F" ? (readByBackward[t] ? PLACE_STASH : PLACE_WORK_F) : PLACE_WORK_B;
  }
  const offsets = new Float64Array(n).fill(-1);
  let stashBytes = 0;
  let messageBytes = 0;
  for (let t = 0; t < n; t++) {
    if (!used[t]) continue;
    if (kind[t] === PLACE_STASH) {
      offsets[t] = stashBytes;
      stashBytes += alignUp(sizes[t]!);
    } else if (kind[t] === PLACE_MESSAGE) {
      offsets[t] = 0;
      messageBytes = Math.max(messageBytes, sizes[t]!);
    }
  }
  const workOf = (k: number) => {
    const mask = new Uint8Array(n);
    for (let t = 0; t < n; t++) mask[t] = kind[t] === k ? 1 : 0;
    return mask;
  };
  const forwardWork = allocateWork(d.forward, workOf(PLACE_WORK_F), sizes, offsets);
  const backwardWork = allocateWork(d.backward, workOf(PLACE_WORK_B), sizes, offsets);
  // Renumber densely in first-use order.
  const ids = new Int32Array(n).fill(-1);
  const tensors: ProgramTensor[] = [];
  const tensorBlocks: Block[] = [];
  const id = (t: number) => {
    if (ids[t]! < 0) {
      ids[t] = tensors.length;
      const x = d.tensors[t]!;
      tensorBlocks.push(x.origin.block);
      const place = kind[t] === PLACE_MESSAGE ? x.place! : kind[t] === PLACE_STASH ? "stash" : "work";
      tensors.push({ name: x.name, place, offset: offsets[t]!, shape: x.shape, dtype: x.dtype });
    }
    return ids[t]!;
  };
  const renumber = (op: DraftOp): ProgramOp => {
    const out: ProgramOp = { op: op.op, in: op.in.map(id), out: op.out.map(id) };
    if (op.scratch) out.scratch = op.scratch.map(id);
    if (op.weight !== undefined) out.weight = op.weight;
    if (op.module !== undefined) out.module = op.module;
    if (op.layer !== undefined) out.layer = op.layer;
    if (op.parts !== undefined) out.parts = op.parts;
    if (op.chunk !== undefined) out.chunk = op.chunk;
    return out;
  };
  const forward = d.forward.map(renumber);
  const backward = d.backward.map(renumber);
  return { program: { class: cls, tensors, forward, backward, stashBytes, messageBytes, workBytes: Math.max(forwardWork, backwardWork) }, tensorBlocks };
}
