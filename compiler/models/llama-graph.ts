import type { LlamaArch } from "../job.js";
import { targetModules, type TargetModuleName } from "./llama.js";

export type OpKind = "embedding" | "rmsnorm" | "linear" | "rope" | "attention" | "add" | "swiglu" | "cross_entropy";

/**
 * One operation of the forward pass over a micro-batch of T tokens. Every value is [T, width].
 * `block` is the partition unit the op belongs to: "embedding", "head", or a layer block
 * (2i: layer i's attention half, 2i + 1: its MLP half).
 */
export interface GraphNode {
  id: number;
  op: OpKind;
  name: string;
  layer: number | null;
  block: number | "embedding" | "head";
  inputs: number[];
  width: number;
  /** The frozen base weight it reads (Hugging Face name). */
  weight?: string;
  /** Where a LoRA adapter may attach (linear ops only). */
  lora?: TargetModuleName;
}

export interface Graph {
  nodes: GraphNode[];
  /** Layer blocks: 2 per decoder layer. */
  blocks: number;
}

/** The Llama forward pass as a dataflow graph with LoRA attachment points. */
export function lowerLlama(arch: LlamaArch): Graph {
  const nodes: GraphNode[] = [];
  const add = (node: Omit<GraphNode, "id">): number => {
    nodes.push({ id: nodes.length, ...node });
    return nodes.length - 1;
  };
  const modules = new Map(targetModules(arch).map((m) => [m.name, m]));
  const linear = (layer: number, block: number, name: TargetModuleName, input: number) => {
    const m = modules.get(name)!;
    const path = `model.layers.${layer}.${m.parent}.${name}`;
    return add({ op: "linear", name: path, layer, block, inputs: [input], width: m.out, weight: `${path}.weight`, lora: name });
  };

  let x = add({ op: "embedding", name: "model.embed_tokens", layer: null, block: "embedding", inputs: [], width: arch.hidden, weight: "model.embed_tokens.weight" });
  for (let i = 0; i < arch.layers; i++) {
    const attn = 2 * i;
    const prefix = `model.layers.${i}`;
    const n1 = add({ op: "rmsnorm", name: `${prefix}.input_layernorm`, layer: i, block: attn, inputs: [x], width: arch.hidden, weight: `${prefix}.input_layernorm.weight` });
    const q = linear(i, attn, "q_proj", n1);
    const k = linear(i, attn, "k_proj", n1);
    const v = linear(i, attn, "v_proj", n1);
    const qr = add({ op: "rope", name: `${prefix}.self_attn.rope_q`, layer: i, block: attn, inputs: [q], width: arch.heads * arch.headDim });
    const kr = add({ op: "rope", name: `${prefix}.self_attn.rope_k`, layer: i, block: attn, inputs: [k], width: arch.kvHeads * arch.headDim });
    const a = add({ op: "attention", name: `${prefix}.self_attn.attention`, layer: i, block: attn, inputs: [qr, kr, v], width: arch.heads * arch.headDim });
    const o = linear(i, attn, "o_proj", a);
    x = add({ op: "add", name: `${prefix}.attn_residual`, layer: i, block: attn, inputs: [x, o], width: arch.hidden });

    const mlp = 2 * i + 1;
    const n2 = add({ op: "rmsnorm", name: `${prefix}.post_attention_layernorm`, layer: i, block: mlp, inputs: [x], width: arch.hidden, weight: `${prefix}.post_attention_layernorm.weight` });
    const gate = linear(i, mlp, "gate_proj", n2);
    const up = linear(i, mlp, "up_proj", n2);
    const act = add({ op: "swiglu", name: `${prefix}.mlp.act`, layer: i, block: mlp, inputs: [gate, up], width: arch.ffn });
    const down = linear(i, mlp, "down_proj", act);
    x = add({ op: "add", name: `${prefix}.mlp_residual`, layer: i, block: mlp, inputs: [x, down], width: arch.hidden });
  }
  const norm = add({ op: "rmsnorm", name: "model.norm", layer: null, block: "head", inputs: [x], width: arch.hidden, weight: "model.norm.weight" });
  const headWeight = arch.tieEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight";
  const logits = add({ op: "linear", name: "lm_head", layer: null, block: "head", inputs: [norm], width: arch.vocab, weight: headWeight });
  add({ op: "cross_entropy", name: "loss", layer: null, block: "head", inputs: [logits], width: 1 });
  return { nodes, blocks: 2 * arch.layers };
}
