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
 *
 * Time: each kernel on its own roofline, max(FLOPs / (peak x efficiency), bytes / (bandwidth x
 * efficiency)), plus a launch; a stage's kernels run one after another, so their times add.
 */
import type { DeviceProfile } from "../devices.js";
import type { LlamaArch } from "../job.js";
import type { MicroBatch, ResolvedAdapter } from "../ir.js";
import { targetModules } from "../models/llama.js";

export const DTYPE_BYTES = { bf16: 2, fp16: 2, fp32: 4 } as const;

/** Fraction of peak a device reaches: matrix products, and the memory-bound rest. */
export const EFFICIENCY = { matmul: 0.6, memory: 0.7 } as const;

/** Time to launch one kernel, on top of its roofline time. */
export const KERNEL_LAUNCH_SECONDS = 4e-6;

/** Time to start any transfer, on top of bytes / bandwidth. */
export const LINK_LATENCY_SECONDS = { intraNode: 10e-6, interNode: 30e-6 } as const;

export interface Work {
  flops: number;
  /** Bytes moved by the memory-bound ops (norms, element-wise, softmax), read and written. */
  bytes: number;
}

/** Micro-batches with the same parts (adapter and sequences) cost and stash the same. */
export function shapeKey(mb: MicroBatch): string {
  return mb.parts.map((p) => `${p.adapter}x${p.sequences}`).join(",");
}

/**
 * Seconds of one micro-batch's forward and backward over layer blocks [first, last) plus the
 * head, on `device`. Each kernel is priced on its own roofline (its FLOPs against its bytes:
 * a base weight is read once per micro-batch, so few tokens make a product memory-bound) plus a
 * launch; kernels run one after another. Fusing adapters into one micro-batch therefore saves
 * weight reads and launches, which is what the `auto` schedule weighs against the pipeline's
 * coarser granularity. LoRA runs as one multi-adapter kernel pair per module (shrink, expand),
 * whatever the number of adapters in the micro-batch.
 */
export function stageSeconds(
  arch: LlamaArch,
  blocks: [number, number],
  head: boolean,
  mb: MicroBatch,
  adapters: readonly ResolvedAdapter[],
  activationBytes: number,
  device: DeviceProfile,
): { forward: number; backward: number } {
  const modules = targetModules(arch);
  const rows = mb.parts.map((p) => ({ adapter: adapters[p.adapter]!, tokens: p.sequences * adapters[p.adapter]!.seqLen }));
  const T = rows.reduce((n, r) => n + r.tokens, 0);
  const C = arch.hidden;
  const d = activationBytes;
  let forward = 0;
  let backward = 0;
  const kernel = (work: Work) => seconds(work, device) + KERNEL_LAUNCH_SECONDS;
  for (let b = blocks[0]; b < blocks[1]; b++) {
    const attention = b % 2 === 0;
    const own = modules.filter((m) => (m.parent === "self_attn") === attention);
    for (const m of own) {
      // The base product (backward: dX only, the same FLOPs and bytes).
      const base = kernel({ flops: 2 * T * m.in * m.out, bytes: m.in * m.out * d + T * (m.in + m.out) * d });
      forward += base;
      backward += base;
      let flops = 0;
      let bytes = 0;
      for (const r of rows) {
        if (!r.adapter.modules.some((x) => x.name === m.name)) continue;
        flops += 2 * r.tokens * r.adapter.rank * (m.in + m.out);
        bytes += r.adapter.rank * (m.in + m.out) * 4 + r.tokens * (m.in + m.out + 2 * r.adapter.rank) * d;
      }
      if (flops > 0) {
        forward += seconds({ flops, bytes }, device) + 2 * KERNEL_LAUNCH_SECONDS;
        backward += seconds({ flops: 2 * flops, bytes: 2 * bytes }, device) + 4 * KERNEL_LAUNCH_SECONDS;
      }
    }
    if (attention) {
      let flops = 0;
      for (const r of rows) flops += 4 * r.tokens * ((r.adapter.seqLen + 1) / 2) * arch.heads * arch.headDim;
      const io = T * (2 * arch.heads * arch.headDim + 2 * arch.kvHeads * arch.headDim) * d;
      forward += kernel({ flops, bytes: io });
      backward += kernel({ flops: 2.5 * flops, bytes: 2 * io });
    }
    // Element-wise kernels: a norm, the residual add, RoPE or SwiGLU: about 8 passes over [T, C]
    // (MLP: over [T, F] for the activation) in the activation dtype, in four launches.
    const width = attention ? C + arch.heads * arch.headDim : C + 3 * arch.ffn;
    const bytes = 8 * T * width * d;
    forward += seconds({ flops: 0, bytes }, device) + 4 * KERNEL_LAUNCH_SECONDS;
    backward += seconds({ flops: 0, bytes: 2 * bytes }, device) + 8 * KERNEL_LAUNCH_SECONDS;
  }
  if (head) {
    const weights = arch.vocab * C * d;
    const logits = T * arch.vocab * 4; // fp32 logits
    forward += kernel({ flops: 2 * T * C * arch.vocab, bytes: weights + logits }) + kernel({ flops: 0, bytes: 3 * logits });
    backward += kernel({ flops: 2 * T * C * arch.vocab, bytes: weights + logits });
  }
  return { forward, backward };
}

/** Seconds for `work` on `device`: compute and memory traffic overlap (roofline: the larger wins). */
export function seconds(work: Work, device: DeviceProfile): number {
  const compute = work.flops / (device.tflops * 1e12 * EFFICIENCY.matmul);
  const memory = work.bytes / (device.bandwidthBytesPerSecond * EFFICIENCY.memory);
  return Math.max(compute, memory);
}
