import type { LlamaArch } from "../job.js";
import type { Graph, GraphNode } from "../models/llama-graph.js";
import { TARGET_MODULES } from "../models/llama.js";
import { ProgramDraft, type DraftOp, type Origin } from "./builder.js";
import type { ShapeClass, TensorDtype } from "./types.js";

/** Rows of a packed attention block (ops.h kAttentionBlock): blocks hold whole examples. */
export const ATTENTION_BLOCK = 256;
/** LoRA's intermediates (u, the masked input, their gradients): fp32 whatever the model's dtype. */
export const LORA_DTYPE: TensorDtype = "f32";
/** The head computes logits for this many bytes of rows at a time (fp32), never the whole micro-batch's. */
export const HEAD_CHUNK_BYTES = 16 << 20;

export interface StageSpan {
  blocks: [number, number];
  embedding: boolean;
  head: boolean;
}

export interface ForwardInputs {
  arch: LlamaArch;
  graph: Graph;
  stage: StageSpan;
  cls: ShapeClass;
  dtype: TensorDtype;
  /** Index of each base weight in the stage's weight table. */
  weightIndex: ReadonlyMap<string, number>;
}

/** The rows of logits the head computes at once for a vocabulary of `vocab`, out of `rows`. */
export function headChunk(vocab: number, rows: number): number {
  return Math.max(1, Math.min(rows, Math.floor(HEAD_CHUNK_BYTES / (4 * vocab))));
}

/** The largest packed attention block of a class: up to ATTENTION_BLOCK rows plus the last example's. */
export function attentionRows(cls: ShapeClass): number {
  return cls.attentionRows;
}

/**
 * The forward program of a stage over one shape class, lowered node by node from the model's
 * dataflow graph: each linear becomes the base GEMM over all rows, then (where some part's
 * adapter targets it) one LoRA shrink and one expand over every part's rows. The last stage's
 * head fuses the logits with the loss and its gradient, a chunk of rows at a time. Layers are
 * numbered from the stage's first (LoRA ops' `layer`, tensor names "l+2.q"), and base weights by
 * their index in the stage's table, so stages of the same shape have the same program.
 */
export function lowerForward({ arch, graph, stage, cls, dtype, weightIndex }: ForwardInputs): ProgramDraft {
  const d = new ProgramDraft();
  const T = cls.rows;
  const C = arch.hidden;
  const ops = d.forward;
  const firstLayer = Math.floor(stage.blocks[0] / 2);
  const inStage = (n: GraphNode) =>
    n.block === "embedding" ? stage.embedding : n.block === "head" ? stage.head : n.block >= stage.blocks[0] && n.block < stage.blocks[1];
  const blockOf = (n: GraphNode): DraftOp["block"] => (n.block === "embedding" ? "entry" : n.block);
  const weight = (name: string): number => {
    const w = weightIndex.get(name);
    if (w === undefined) throw new Error(`stage weight table lacks ${name}`);
    return w;
  };
  const value = new Map<number, number>(); // graph node -> tensor holding its value
  let entry: number | undefined;
  const input = (node: number): number => {
    const t = value.get(node);
    if (t !== undefined) return t;
    // A value from before the stage: the residual stream, received from the previous stage.
    if (entry === undefined) {
      const received = d.tensor("act_in", [T, C], dtype, { program: "F", block: "entry" }, "act_in");
      entry = d.tensor("x", [T, C], dtype, { program: "F", block: "entry" });
      d.emit(ops, "copy", "entry", { in: [received], out: [entry] });
    }
    return entry;
  };
  const nodes = graph.nodes.filter(inStage);
  const origins = new Map<DraftOp["block"], Origin>();
  for (let i = 0; i < nodes.length; i++) {
    const n = nodes[i]!;
    const block = blockOf(n);
    let origin = origins.get(block);
    if (!origin) {
      origin = { program: "F", block };
      origins.set(block, origin);
    }
    // Layers are counted from the stage's first: stages of the same shape share their programs.
    const layer = n.layer === null ? null : n.layer - firstLayer;
    const tag = layer === null ? n.name.replace(/^model\./, "") : `l+${layer}.${n.name.split(".").pop()}`;
    const make = (name: string, width: number, type: TensorDtype = dtype) => d.tensor(name, [T, width], type, origin);
    switch (n.op) {
      case "embedding": {
        const x = make("x0", C);
        d.emit(ops, "embed", block, { in: [], out: [x], weight: weight(n.weight!) });
        value.set(n.id, x);
        break;
      }
      case "rmsnorm": {
        const x = input(n.inputs[0]!);
        const y = make(tag, C);
        const rstd = d.tensor(`${tag}.rstd`, [T], "f32", origin);
        d.emit(ops, "rmsnorm", block, { in: [x], out: [y, rstd], weight: weight(n.weight!) });
        value.set(n.id, y);
        break;
      }
      case "linear": {
        const x = input(n.inputs[0]!);
        const next = nodes[i + 1];
        if (n.block === "head" && next?.op === "cross_entropy") {
          // Logits and loss fused: the gradient of the loss w.r.t. the head's input is all that
          // outlives them, computed at forward time a chunk of rows at a time.
          const dn = make("head.dn", C);
          const chunk = headChunk(arch.vocab, T);
          const logits = d.tensor("head.logits", [chunk, arch.vocab], "f32", origin);
          // Hugging Face rounds the logits' gradient to the model's dtype before the head's
          // backward GEMM: below fp32 it has a buffer of its own (in fp32 it overwrites the logits).
          const scratch = [logits];
          if (dtype !== "f32") scratch.push(d.tensor("head.dlogits", [chunk, arch.vocab], dtype, origin));
          d.emit(ops, "head_loss", block, { in: [x], out: [dn], scratch, weight: weight(n.weight!), chunk });
          value.set(n.id, dn);
          i++;
          break;
        }
        const y = make(tag, n.width);
        d.emit(ops, "linear", block, { in: [x], out: [y], weight: weight(n.weight!) });
        const module = n.lora === undefined ? -1 : TARGET_MODULES.indexOf(n.lora);
        const parts = cls.parts.flatMap((p, k) => (p.modules.includes(module) ? [k] : []));
        if (parts.length > 0) {
          // PEFT runs the LoRA branch in its fp32 weights' dtype (autocast_adapter_dtype): the
          // input is cast up, masked, shrunk and expanded in fp32, and only the sum is rounded.
          const u = parts.map((k) => d.tensor(`${tag}.u${k}`, [cls.parts[k]!.rows, cls.parts[k]!.rank], LORA_DTYPE, origin));
          const inWidth = d.tensors[x]!.shape[1]!;
          const dropped = parts.filter((k) => cls.parts[k]!.dropout).reduce((s, k) => s + cls.parts[k]!.rows * inWidth, 0);
          const scratch = dropped > 0 ? [d.tensor(`${tag}.dropped`, [dropped], LORA_DTYPE, origin)] : [];
          d.emit(ops, "lora_shrink", block, { in: [x], out: u, scratch, module, layer: layer!, parts });
          d.emit(ops, "lora_expand", block, { in: [y, ...u], out: [y], module, layer: layer!, parts });
        }
        value.set(n.id, y);
        break;
      }
      case "rope": {
        const x = input(n.inputs[0]!);
        d.emit(ops, "rope", block, { in: [x], out: [x] });
        value.set(n.id, x);
        break;
      }
      case "attention": {
        const [q, k, v] = n.inputs.map(input) as [number, number, number];
        const out = make(tag, n.width);
        const lse = d.tensor(`${tag}.lse`, [T, arch.heads], "f32", origin);
        const rows = attentionRows(cls);
        const scores = d.tensor(`${tag}.scores`, [rows, rows], "f32", origin);
        d.emit(ops, "attention", block, { in: [q, k, v], out: [out, lse], scratch: [scores], chunk: ATTENTION_BLOCK });
        value.set(n.id, out);
        break;
      }
      case "swiglu": {
        const [g, u] = n.inputs.map(input) as [number, number];
        const out = make(tag, n.width);
        d.emit(ops, "swiglu", block, { in: [g, u], out: [out] });
        value.set(n.id, out);
        break;
      }
      case "add": {
        const [a, b] = n.inputs.map(input) as [number, number];
        const out = make(`x${typeof n.block === "number" ? n.block + 1 : ""}`, C);
        d.emit(ops, "add", block, { in: [a, b], out: [out] });
        value.set(n.id, out);
        break;
      }
      case "cross_entropy":
        throw new Error("cross_entropy without the head's linear before it");
    }
  }
  if (!stage.head) {
    const last = nodes.length > 0 ? value.get(nodes[nodes.length - 1]!.id)! : input(-1);
    const sent = d.tensor("act_out", [T, C], dtype, { program: "F", block: "exit" }, "act_out");
    d.emit(ops, "copy", "exit", { in: [last], out: [sent] });
  }
  return d;
}
