import type { Dtype, LlamaArch } from "../job.js";
import { TARGET_MODULES, targetModules, type TargetModuleName } from "../models/llama.js";
import type { StageSpan } from "./forward.js";
import { TENSOR_DTYPE_BYTES, type AdapterSite, type TensorDtype, type WeightSlot } from "./types.js";

export const TENSOR_DTYPE: Readonly<Record<Dtype, TensorDtype>> = { fp32: "f32", bf16: "bf16", fp16: "fp16" };

/** The block a module runs in: 2l for attention's, 2l + 1 for the MLP's. */
export const moduleBlock = (layer: number, module: number): number => 2 * layer + (module >= TARGET_MODULES.indexOf("gate_proj") ? 1 : 0);

/**
 * The stage's weights arena: every base weight its blocks read, end to end in this order: the
 * embedding (first stage, and the last when tied), then layer by layer its norms and projections
 * (only the halves of a layer whose blocks the stage runs), then the final norm and head.
 */
export function weightLayout(arch: LlamaArch, stage: StageSpan, dtype: TensorDtype): { slots: WeightSlot[]; bytes: number } {
  const slots: WeightSlot[] = [];
  let bytes = 0;
  const add = (name: string, shape: number[]) => {
    slots.push({ name, offset: bytes, shape, dtype });
    bytes += shape.reduce((a, b) => a * b, 1) * TENSOR_DTYPE_BYTES[dtype];
  };
  if (stage.embedding || (stage.head && arch.tieEmbeddings)) add("model.embed_tokens.weight", [arch.vocab, arch.hidden]);
  const modules = targetModules(arch);
  const [b0, b1] = stage.blocks;
  for (let l = Math.floor(b0 / 2); l < Math.ceil(b1 / 2); l++) {
    const p = `model.layers.${l}`;
    if (2 * l >= b0 && 2 * l < b1) add(`${p}.input_layernorm.weight`, [arch.hidden]);
    if (2 * l + 1 >= b0 && 2 * l + 1 < b1) add(`${p}.post_attention_layernorm.weight`, [arch.hidden]);
    modules.forEach((m, i) => {
      const b = moduleBlock(l, i);
      if (b >= b0 && b < b1) add(`${p}.${m.parent}.${m.name}.weight`, [m.out, m.in]);
    });
  }
  if (stage.head) {
    add("model.norm.weight", [arch.hidden]);
    if (!arch.tieEmbeddings) add("lm_head.weight", [arch.vocab, arch.hidden]);
  }
  return { slots, bytes };
}

export interface LayoutAdapter {
  rank: number;
  modules: readonly { name: TargetModuleName }[];
  optimizer: { kind: "adamw" | "sgd"; momentum: number };
}

/** fp32 buffers per LoRA parameter: weight and gradient, plus AdamW's two moments or SGD's momentum. */
export const stateCopies = (a: LayoutAdapter): number => (a.optimizer.kind === "adamw" ? 4 : a.optimizer.momentum > 0 ? 3 : 2);

/**
 * The stage's adapter arena: for each adapter in order, each of its sites on the stage's blocks
 * (by layer, then module): A [r, in], B [out, r], dA, dB, then the optimizer's moments (each
 * [r*in + out*r], A's part first), all fp32.
 */
export function adapterLayout(arch: LlamaArch, stage: StageSpan, adapters: readonly LayoutAdapter[]): { sites: AdapterSite[]; bytes: number } {
  const modules = targetModules(arch);
  const sites: AdapterSite[] = [];
  let bytes = 0;
  const [b0, b1] = stage.blocks;
  adapters.forEach((a, adapter) => {
    const targets = new Set(a.modules.map((m) => m.name));
    for (let layer = Math.floor(b0 / 2); layer < Math.ceil(b1 / 2); layer++) {
      modules.forEach((m, module) => {
        const b = moduleBlock(layer, module);
        if (!targets.has(m.name) || b < b0 || b >= b1) return;
        sites.push({ adapter, layer, module, offset: bytes });
        bytes += stateCopies(a) * a.rank * (m.in + m.out) * 4;
      });
    }
  });
  return { sites, bytes };
}
