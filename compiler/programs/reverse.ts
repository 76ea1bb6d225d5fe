import type { LlamaArch } from "../job.js";
import type { Block, DraftOp, Origin, ProgramDraft } from "./builder.js";
import { attentionRows, LORA_DTYPE } from "./forward.js";
import type { ShapeClass } from "./types.js";

/**
 * The backward program, derived from the forward one by reverse mode: forward ops are visited
 * last to first and each contributes its adjoint by the rule for its kind. Gradients of a value
 * with several consumers accumulate (a zeroed buffer, then +=); a residual add passes its
 * gradient through without a copy where no later write can disturb a reader. The base is
 * frozen: no rule computes a base weight's gradient. LoRA's shrink and expand have one fused
 * adjoint (dA and dB accumulate, dX adds), emitted at the expand.
 */
export function deriveBackward(d: ProgramDraft, arch: LlamaArch, cls: ShapeClass): void {
  const grads = new Map<number, number>();
  const out: DraftOp[] = [];
  const fwd = d.forward;
  let block: Block = "head";
  // Backward tensors are tagged with the block whose adjoint makes them.
  const origins = new Map<Block, Origin>();
  const back = (): Origin => {
    let o = origins.get(block);
    if (!o) {
      o = { program: "B", block };
      origins.set(block, o);
    }
    return o;
  };
  const emit = (op: DraftOp["op"], fields: Omit<DraftOp, "op" | "block">) => d.emit(out, op, block, fields);
  /** The gradient buffer of `t`, made (and zeroed) on the first contribution. */
  const accumulator = (t: number): number => {
    const have = grads.get(t);
    if (have !== undefined) return have;
    const src = d.tensors[t]!;
    const g = d.tensor(`d${src.name}`, src.shape, src.dtype, back());
    grads.set(t, g);
    emit("zero", { in: [], out: [g] });
    return g;
  };
  // Forward ops touching each tensor, by position: what decides whether a gradient may be shared.
  const touches = new Map<number, number[]>();
  const rotated = new Set<number>();
  const shrinks = new Map<string, DraftOp>();
  fwd.forEach((op, i) => {
    for (const list of [op.in, op.out]) {
      for (const t of list) {
        const at = touches.get(t);
        if (at) at.push(i);
        else touches.set(t, [i]);
      }
    }
    if (op.op === "rope") for (const t of op.out) rotated.add(t);
    if (op.op === "lora_shrink") shrinks.set(`${op.layer} ${op.module}`, op);
  });
  const inPlace = (t: number) => rotated.has(t);

  for (let i = fwd.length - 1; i >= 0; i--) {
    const f = fwd[i]!;
    block = f.block;
    switch (f.op) {
      case "embed":
        break; // the embedding is frozen and nothing comes before it
      case "copy": {
        const [src] = f.in as [number];
        const [dst] = f.out as [number];
        if (d.tensors[dst]!.place === "act_out") {
          // The seed of a stage that is not the last: the gradient of what it sent.
          const received = d.tensor("grad_in", d.tensors[dst]!.shape, d.tensors[dst]!.dtype, back(), "grad_in");
          const g = d.tensor(`d${d.tensors[src]!.name}`, d.tensors[src]!.shape, d.tensors[src]!.dtype, back());
          emit("copy", { in: [received], out: [g] });
          grads.set(src, g);
          break;
        }
        const g = grads.get(dst);
        if (g === undefined) break;
        if (d.tensors[src]!.place === "act_in") {
          const sent = d.tensor("grad_out", d.tensors[src]!.shape, d.tensors[src]!.dtype, back(), "grad_out");
          emit("copy", { in: [g], out: [sent] });
        } else {
          const acc = accumulator(src);
          emit("accumulate", { in: [g, acc], out: [acc] });
        }
        break;
      }
      case "rmsnorm": {
        const g = grads.get(f.out[0]!);
        if (g === undefined) break;
        const x = f.in[0]!;
        const dx = accumulator(x);
        emit("rmsnorm_bwd", { in: [g, x, f.out[1]!, dx], out: [dx], weight: f.weight! });
        break;
      }
      case "linear": {
        const g = grads.get(f.out[0]!);
        if (g === undefined) break;
        const dx = accumulator(f.in[0]!);
        emit("linear_dx", { in: [g, dx], out: [dx], weight: f.weight! });
        break;
      }
      case "lora_expand": {
        const g = grads.get(f.out[0]!);
        if (g === undefined) break;
        const shrink = shrinks.get(`${f.layer} ${f.module}`)!;
        const x = shrink.in[0]!;
        const u = f.in.slice(1);
        const dx = accumulator(x);
        const parts = f.parts!;
        const inWidth = d.tensors[x]!.shape[1]!;
        const rows = (k: number) => cls.parts[k]!.rows;
        const gSize = parts.reduce((s, k) => s + rows(k) * cls.parts[k]!.rank, 0);
        const dropped = parts.filter((k) => cls.parts[k]!.dropout).reduce((s, k) => s + rows(k) * inWidth, 0);
        const dtype = d.tensors[x]!.dtype;
        const tag = d.tensors[f.out[0]!]!.name;
        const scratch = [d.tensor(`${tag}.G`, [gSize], LORA_DTYPE, back())];
        // With dropout the masked input is rebuilt, and dX goes back through the mask.
        if (dropped > 0) scratch.push(d.tensor(`${tag}.dropped`, [dropped], LORA_DTYPE, back()), d.tensor(`${tag}.dh`, [dropped], LORA_DTYPE, back()));
        emit("lora_bwd", { in: [g, x, ...u, dx], out: [dx], scratch, module: f.module!, layer: f.layer!, parts });
        break;
      }
      case "lora_shrink":
        break; // its adjoint is part of the expand's
      case "rope": {
        const g = grads.get(f.out[0]!);
        if (g !== undefined) emit("rope_inv", { in: [g], out: [g] });
        break;
      }
      case "attention": {
        const g = grads.get(f.out[0]!);
        if (g === undefined) break;
        const [q, k, v] = f.in as [number, number, number];
        const [o, lse] = f.out as [number, number];
        const dq = accumulator(q);
        const dk = accumulator(k);
        const dv = accumulator(v);
        const rows = attentionRows(cls);
        const tag = d.tensors[o]!.name;
        const scratch = [
          d.tensor(`${tag}.probs`, [rows, rows], "f32", back()),
          d.tensor(`${tag}.dprobs`, [rows, rows], "f32", back()),
          d.tensor(`${tag}.rowdot`, [cls.rows, arch.heads], "f32", back()),
        ];
        emit("attention_bwd", { in: [g, o, lse, q, k, v, dq, dk, dv], out: [dq, dk, dv], scratch, chunk: f.chunk! });
        break;
      }
      case "swiglu": {
        const g = grads.get(f.out[0]!);
        if (g === undefined) break;
        const [gate, up] = f.in as [number, number];
        const dgate = accumulator(gate);
        const dup = accumulator(up);
        emit("swiglu_bwd", { in: [g, gate, up, dgate, dup], out: [dgate, dup] });
        break;
      }
      case "add": {
        const g = grads.get(f.out[0]!);
        if (g === undefined) break;
        const [a, b] = f.in as [number, number];
        // b's gradient may be g itself when everything that reads it runs (in reverse) before
        // anything writes a's gradient, and nothing rotates it in place.
        const others = (t: number) => (touches.get(t) ?? []).filter((j) => j !== i);
        const bShares = !grads.has(b) && !inPlace(b) && a !== b && Math.min(...others(b)) > Math.max(-1, ...others(a));
        for (const [t, share] of [[a, !grads.has(a)], [b, bShares]] as const) {
          if (share) grads.set(t, g);
          else if (!grads.has(t)) {
            const copy = d.tensor(`d${d.tensors[t]!.name}`, d.tensors[t]!.shape, d.tensors[t]!.dtype, back());
            emit("copy", { in: [g], out: [copy] });
            grads.set(t, copy);
          } else {
            const acc = grads.get(t)!;
            emit("accumulate", { in: [g, acc], out: [acc] });
          }
        }
        break;
      }
      case "head_loss":
        // The loss's gradient w.r.t. the head's input was computed with the loss.
        grads.set(f.in[0]!, f.out[0]!);
        break;
      default:
        throw new Error(`no adjoint rule for ${f.op} in a forward program`);
    }
  }
  d.backward = out;
}

/**
 * Drops backward ops whose results nothing needs: on the first stage the gradient of its input
 * goes nowhere, so the projections' input gradients of its first block are never computed.
 * LoRA's backward always runs (its dA and dB are the point) but loses its dX when that is dead.
 */
export function eliminateDeadOps(d: ProgramDraft): void {
  const live = new Set<number>();
  for (const t of d.tensors.keys()) if (d.tensors[t]!.place === "grad_out") live.add(t);
  const kept: DraftOp[] = [];
  for (let i = d.backward.length - 1; i >= 0; i--) {
    let op = d.backward[i]!;
    const needed = op.op === "lora_bwd" || op.out.some((t) => live.has(t));
    if (!needed) continue;
    if (op.op === "lora_bwd" && op.out.length > 0 && !live.has(op.out[0]!)) {
      const dx = op.out[0]!;
      const scratch = op.scratch!.filter((t) => !d.tensors[t]!.name.endsWith(".dh"));
      op = { ...op, in: op.in.filter((t) => t !== dx), out: [], scratch };
    }
    for (const t of op.in) live.add(t);
    kept.push(op);
  }
  d.backward = kept.reverse();
}
