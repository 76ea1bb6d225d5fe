/**
 * The cost model: FLOPs and bytes of each stage's work per micro-batch, and the time they take
 * on a device. Every formula is here, in one place, so that it can be read and argued with.
 *
 * FLOPs count a multiply-add as 2. A frozen base computes no weight gradients: its backward is
 * dX only, the same FLOPs as its forward for every linear layer. Attention over a sequence of
 * L tokens attends to (L + 1) / 2 positions on average (causal); its backward recomputes the
 * scores and takes four more products (dP, dQ, dK, dV), 5/2 of its forward. LoRA on a module
 * [in -> out] with rank r costs 2 r (in + out) per token forward and about twice that backward
 * (dB, G, dA, and dX through A).
 */
import type { DeviceProfile } from "../devices.js";
import type { LlamaArch } from "../job.js";
import type { MicroBatch, ResolvedAdapter } from "../ir.js";
import { targetModules } from "../models/llama.js";

export const DTYPE_BYTES = { bf16: 2, fp16: 2, fp32: 4 } as const;

/** Fraction of peak a device reaches: matrix products, and the memory-bound rest. */
export const EFFICIENCY = { matmul: 0.6, memory: 0.7 } as const;

/** Time to start any transfer, on top of bytes / bandwidth. */
export const LINK_LATENCY_SECONDS = { intraNode: 10e-6, interNode: 30e-6 } as const;

export interface Work {
  flops: number;
  /** Bytes moved by the memory-bound ops (norms, element-wise, softmax), read and written. */
  bytes: number;
}

const add = (a: Work, b: Work): Work => ({ flops: a.flops + b.flops, bytes: a.bytes + b.bytes });
const ZERO: Work = { flops: 0, bytes: 0 };

/** Forward and backward work of layer blocks [first, last) plus embedding/head, for one micro-batch. */
export function stageWork(
  arch: LlamaArch,
  blocks: [number, number],
  head: boolean,
  mb: MicroBatch,
  adapters: readonly ResolvedAdapter[],
  activationBytes: number,
): { forward: Work; backward: Work } {
  const modules = targetModules(arch);
  const rows = mb.parts.map((p) => ({ adapter: adapters[p.adapter]!, tokens: p.sequences * adapters[p.adapter]!.seqLen }));
  const T = rows.reduce((n, r) => n + r.tokens, 0);
  const C = arch.hidden;
  let forward = ZERO;
  let backward = ZERO;
  for (let b = blocks[0]; b < blocks[1]; b++) {
    const attention = b % 2 === 0;
    const own = modules.filter((m) => (m.parent === "self_attn") === attention);
    const linear = own.reduce((n, m) => n + 2 * T * m.in * m.out, 0);
    let lora = 0;
    for (const r of rows) {
      for (const m of r.adapter.modules) if (own.some((o) => o.name === m.name)) lora += 2 * r.tokens * r.adapter.rank * (m.in + m.out);
    }
    let scores = 0;
    if (attention) for (const r of rows) scores += 4 * r.tokens * ((r.adapter.seqLen + 1) / 2) * arch.heads * arch.headDim;
    // Element-wise traffic: a norm, the residual add, RoPE or SwiGLU: about 8 passes over [T, C]
    // (MLP: over [T, F] for the activation) in the activation dtype.
    const width = attention ? C + arch.heads * arch.headDim : C + 3 * arch.ffn;
    const bytes = 8 * T * width * activationBytes;
    forward = add(forward, { flops: linear + lora + scores, bytes });
    backward = add(backward, { flops: linear + 2 * lora + 2.5 * scores, bytes: 2 * bytes });
  }
  if (head) {
    const logits = 2 * T * C * arch.vocab;
    const softmax = 4 * T * arch.vocab * 4; // fp32 logits: max, exp-sum, gradient
    forward = add(forward, { flops: logits, bytes: softmax });
    backward = add(backward, { flops: logits, bytes: T * arch.vocab * 4 });
  }
  return { forward, backward };
}

/** Seconds for `work` on `device`: compute and memory traffic overlap (roofline: the larger wins). */
export function seconds(work: Work, device: DeviceProfile): number {
  const compute = work.flops / (device.tflops * 1e12 * EFFICIENCY.matmul);
  const memory = work.bytes / (device.bandwidthBytesPerSecond * EFFICIENCY.memory);
  return Math.max(compute, memory);
}
