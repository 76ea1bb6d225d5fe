/**
 * Memory: what a stage holds at its peak, and the estimates the partition search uses.
 * The figures a plan shows come from its compiled programs (compiler/programs): the weights and
 * adapter arenas, and the activation arena that the liveness allocator lays out over a round
 * (each micro-batch's stash slot from its F to its B, message buffers around their SEND and
 * RECV), followed by the workspace the largest program needs. The engine allocates exactly that.
 * The per-block estimates below (stashBytes, workspaceBytes) only guide where the stage cuts go;
 * whether a plan fits is always judged on its programs.
 */
import { formatBytes } from "../../dsl/index.js";
import type { MicroBatch, ResolvedAdapter, StageAssignment } from "../ir.js";
import type { LlamaArch } from "../job.js";
import { targetModules } from "../models/llama.js";

/** What the memory model reads of an adapter (a compiled plan's adapters carry as much). */
export type MemoryAdapter = Pick<ResolvedAdapter, "rank" | "seqLen" | "modules"> & { optimizer: Pick<ResolvedAdapter["optimizer"], "kind" | "momentum"> };
type MemoryStage = Pick<StageAssignment, "index" | "blocks" | "embedding" | "head"> & Partial<StageAssignment>;

export interface StageMemory {
  weightBytes: number;
  adapterBytes: number;
  /** The round region of the activation arena: stash slots and message buffers. */
  activationBytes: number;
  /** The workspace: temporaries of the program running now (forward or backward, one at a time). */
  workspaceBytes: number;
  /** Micro-batches stashed at the peak. */
  inFlight: number;
  totalBytes: number;
}

export function baseWeightBytes(arch: LlamaArch, stage: MemoryStage, dtypeBytes: number): number {
  const modules = targetModules(arch);
  let n = 0;
  for (let b = stage.blocks[0]; b < stage.blocks[1]; b++) {
    const attention = b % 2 === 0;
    n += arch.hidden; // the block's norm
    for (const m of modules) if ((m.parent === "self_attn") === attention) n += m.in * m.out;
  }
  if (stage.embedding || (stage.head && arch.tieEmbeddings)) n += arch.vocab * arch.hidden;
  if (stage.head) n += arch.hidden + (arch.tieEmbeddings ? 0 : arch.vocab * arch.hidden);
  return n * dtypeBytes;
}

/**
 * Why a stage does not fit, for LF4002 (from the compiler and from a plan read back): its peak
 * against the device's capacity, part by part, and what would make it fit.
 */
export function shortfall(stage: number, m: StageMemory, capacity: number, device: string, recompute: boolean): string {
  const fixes = [recompute ? null : "`recompute true`", "more stages", "a smaller micro_batch"].filter(Boolean).join(", ");
  return (
    `stage ${stage} needs ${formatBytes(m.totalBytes)} but each ${device} has ${formatBytes(capacity)} (short ${formatBytes(m.totalBytes - capacity)}): ` +
    `weights ${formatBytes(m.weightBytes)}, adapters ${formatBytes(m.adapterBytes)}, activations ${formatBytes(m.activationBytes)} ` +
    `for ${m.inFlight} micro-batch${m.inFlight === 1 ? "" : "es"} in flight, workspace ${formatBytes(m.workspaceBytes)}; try ${fixes}`
  );
}

/** LoRA parameters of an adapter in layer blocks [first, last): attention modules in even blocks. */
export function loraParameters(a: Pick<MemoryAdapter, "rank" | "modules">, blocks: [number, number]): number {
  let n = 0;
  for (let b = blocks[0]; b < blocks[1]; b++) {
    for (const m of a.modules) if ((m.parent === "self_attn") === (b % 2 === 0)) n += a.rank * (m.in + m.out);
  }
  return n;
}

/** fp32 LoRA weights and gradients, plus AdamW's two moments (SGD: one buffer with momentum). */
export function adapterStateBytes(adapters: readonly MemoryAdapter[], blocks: [number, number]): number {
  let bytes = 0;
  for (const a of adapters) {
    const copies = a.optimizer.kind === "adamw" ? 4 : a.optimizer.momentum > 0 ? 3 : 2;
    bytes += loraParameters(a, blocks) * 4 * copies;
  }
  return bytes;
}

/** What one micro-batch stashes on a stage between its forward and its backward. */
export function stashBytes(arch: LlamaArch, stage: MemoryStage, mb: MicroBatch, adapters: readonly MemoryAdapter[], dtypeBytes: number, recompute: boolean): number {
  const C = arch.hidden;
  const q = arch.heads * arch.headDim;
  const kv = arch.kvHeads * arch.headDim;
  let total = 0;
  for (const part of mb.parts) {
    const a = adapters[part.adapter]!;
    const T = part.sequences * a.seqLen;
    for (let b = stage.blocks[0]; b < stage.blocks[1]; b++) {
      const attention = b % 2 === 0;
      if (recompute) {
        total += T * C * dtypeBytes;
        continue;
      }
      // Block input and its norm; then q, k, v, the attention output and fp32 log-sum-exp, or
      // the MLP's gate, up and activation; and each LoRA branch's [T, r].
      let elements = 2 * T * C + (attention ? T * (2 * q + 2 * kv) : 3 * T * arch.ffn);
      for (const m of a.modules) if ((m.parent === "self_attn") === attention) elements += T * a.rank;
      total += elements * dtypeBytes + (attention ? T * arch.heads * 4 : 0);
    }
    // The head keeps its input, its norm and the fp32 gradient of the logits.
    if (stage.head) total += 2 * T * C * dtypeBytes + T * arch.vocab * 4;
  }
  return total;
}

/** The working set of one micro-batch's forward and backward through the stage's largest block. */
export function workspaceBytes(arch: LlamaArch, stage: MemoryStage, mb: MicroBatch, adapters: readonly MemoryAdapter[], dtypeBytes: number): number {
  let block = 0;
  // Blocks alternate attention and MLP: the first two of the stage are one of each.
  for (let b = stage.blocks[0]; b < Math.min(stage.blocks[1], stage.blocks[0] + 2); b++) {
    block = Math.max(block, stashBytes(arch, { ...stage, blocks: [b, b + 1], head: false }, mb, adapters, dtypeBytes, false));
  }
  let logits = 0;
  if (stage.head) for (const part of mb.parts) logits += 2 * part.sequences * adapters[part.adapter]!.seqLen * arch.vocab * 4;
  return 2 * block + logits;
}
