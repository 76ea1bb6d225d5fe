import type { ProgramOp, ProgramOpName, TensorDtype, TensorPlace } from "./types.js";

/** Which program a tensor is made in, and the block whose op (or adjoint) makes it. */
export type Block = number | "entry" | "exit" | "head";
export type Origin = { program: "F" | "B"; block: Block };

/** A tensor while a program is being built: its place is decided once both programs exist. */
export interface DraftTensor {
  name: string;
  shape: number[];
  dtype: TensorDtype;
  /** Fixed for message buffers; decided later for the others (stash or work). */
  place?: TensorPlace;
  origin: Origin;
}

/** A forward op with the block it belongs to (the unit of recomputation). */
export interface DraftOp extends ProgramOp {
  block: Block;
}

/** The tensors and ops of one stage's programs over one shape class, as they are built. */
export class ProgramDraft {
  readonly tensors: DraftTensor[] = [];
  readonly forward: DraftOp[] = [];
  backward: DraftOp[] = [];

  tensor(name: string, shape: number[], dtype: TensorDtype, origin: Origin, place?: TensorPlace): number {
    this.tensors.push({ name, shape, dtype, origin, ...(place !== undefined && { place }) });
    return this.tensors.length - 1;
  }

  emit(list: DraftOp[], op: ProgramOpName, block: DraftOp["block"], fields: Omit<ProgramOp, "op">): void {
    const draft = fields as DraftOp;
    draft.op = op;
    draft.block = block;
    list.push(draft);
  }
}

/** Every tensor an op touches: what it reads, writes and works in. */
export function touched(op: ProgramOp): number[] {
  return [...op.in, ...op.out, ...(op.scratch ?? [])];
}

/** The same, one by one, without making a list (placement calls it for every op). */
export function forEachTouched(op: ProgramOp, fn: (t: number) => void): void {
  for (const t of op.in) fn(t);
  for (const t of op.out) fn(t);
  if (op.scratch) for (const t of op.scratch) fn(t);
}
