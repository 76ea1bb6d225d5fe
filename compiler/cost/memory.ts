/**
 * The memory model: what a stage holds at its peak. Base weights of its blocks (in the model's
 * dtype), the LoRA state of every adapter on those blocks (fp32 weights, gradients and optimizer
 * moments), and the activations stashed for backward by every micro-batch in flight, counted by
 * walking the stage's action list (a forward stashes, its backward frees). With `recompute`, a
 * block stashes only its input and recomputes the rest in backward. On top of the stashes, the
 * block being computed needs a workspace: its whole activation set and, in backward, their
 * gradients (with the head's fp32 logits and their gradient on the last stage); counting it is
 * what lets the plan promise to fit, recompute or not.
 */
import { formatBytes } from "../../dsl/index.js";
import { parseAction, type Action } from "../plan/actions.js";
import type { MicroBatch, Phase, ResolvedAdapter, StageAssignment } from "../ir.js";
import type { LlamaArch } from "../job.js";
import { targetModules } from "../models/llama.js";
import { shapeKey } from "./model.js";

/** What the memory model reads of an adapter (a compiled plan's adapters carry as much). */
export type MemoryAdapter = Pick<ResolvedAdapter, "rank" | "seqLen" | "modules"> & { optimizer: Pick<ResolvedAdapter["optimizer"], "kind" | "momentum"> };
type MemoryStage = Pick<StageAssignment, "index" | "blocks" | "embedding" | "head"> & Partial<StageAssignment>;

export interface StageMemory {
  weightBytes: number;
  adapterBytes: number;
  activationBytes: number;
  /** Working memory of the block being computed: its full activations and their gradients. */
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

/** The largest sum of stashes alive at once, walking one round of the stage's actions. */
export function peakStash(actions: readonly Action[], bytesOf: (mb: number) => number): { bytes: number; inFlight: number } {
  let live = 0;
  let count = 0;
  let peak = { bytes: 0, inFlight: 0 };
  for (const a of actions) {
    if (a.op === "F") {
      live += bytesOf(a.mb);
      count++;
      if (live > peak.bytes) peak = { bytes: live, inFlight: count };
    } else if (a.op === "B") {
      live -= bytesOf(a.mb);
      count--;
    }
  }
  return peak;
}

export interface MemoryInputs {
  arch: LlamaArch;
  dtypeBytes: number;
  recompute: boolean;
  stages: readonly MemoryStage[];
  adapters: readonly MemoryAdapter[];
  phases: readonly Phase[];
}

/** Each stage's peak under a schedule: the worst phase's stash on top of weights and adapter state. */
export function scheduleMemory({ arch, dtypeBytes, recompute, stages, adapters, phases }: MemoryInputs): StageMemory[] {
  // Stashes and workspaces depend on a micro-batch's shape only: each shape is sized once per stage.
  const shapes = new Map<string, MicroBatch>();
  const shapeOf = phases.map((phase) =>
    phase.microBatches.map((mb) => {
      const key = shapeKey(mb);
      shapes.set(key, mb);
      return key;
    }),
  );
  return stages.map((stage) => {
    let peak = { bytes: 0, inFlight: 0 };
    let workspace = 0;
    const stashOf = new Map<string, number>();
    for (const [key, mb] of shapes) {
      workspace = Math.max(workspace, workspaceBytes(arch, stage, mb, adapters, dtypeBytes));
      stashOf.set(key, stashBytes(arch, stage, mb, adapters, dtypeBytes, recompute));
    }
    for (const [p, phase] of phases.entries()) {
      const sizes = new Map(phase.microBatches.map((mb, i) => [mb.id, stashOf.get(shapeOf[p]![i]!)!]));
      const actions = (phase.actions[stage.index] ?? []).map((t) => parseAction(t)).filter((a): a is Action => a !== undefined);
      const phasePeak = peakStash(actions, (mb) => sizes.get(mb) ?? 0);
      if (phasePeak.bytes > peak.bytes) peak = phasePeak;
    }
    const weightBytes = baseWeightBytes(arch, stage, dtypeBytes);
    const adapterBytes = adapterStateBytes(adapters, stage.blocks);
    return {
      weightBytes,
      adapterBytes,
      activationBytes: peak.bytes,
      workspaceBytes: workspace,
      inFlight: peak.inFlight,
      totalBytes: weightBytes + adapterBytes + peak.bytes + workspace,
    };
  });
}
