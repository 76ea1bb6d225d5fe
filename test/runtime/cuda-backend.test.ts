// The CUDA backend end to end on the emulated GPU (host memory, lazily run streams, kernels on
// the CPU harness, the project's fake cuBLASLt): a whole model's loss and LoRA gradients, cut
// into stages, two adapters fused or apart, with dropout, held to the CPU engine's.
// Errors are of the loss, and of each adapter's whole gradient (every site's dA and dB) by norm.
//   fp32 programs: the same math in another order: 1e-5 of both (measured: 2e-8, 8e-7).
//   bf16 programs (the base weights rounded to bf16 for both sides, so only the kernels'
//   roundings differ): every activation is rounded to 8 significant bits (2^-8) about 20 times
//   on the way to the loss and back, and such errors add up like a random walk: sqrt(20) * 2^-8
//   is about 2% of the gradient (measured: 1.0%, 1.2%; bound 5%), far less of the loss
//   (measured: 4e-4; bound 5e-3).
import * as path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { modelGradPrograms } from "../../runtime/model-programs.js";
import { loadNative } from "../../runtime/native.js";
import { rng } from "../helpers/random.js";
import { microBatch, randomWeights } from "../helpers/tiny-llama.js";
import { adapters, ARCH, SEQUENCES } from "../helpers/two-adapters.js";

type Grads = Record<string, { A: Float64Array; B: Float64Array }>[];
const native = loadNative() as unknown as { modelGrad(spec: unknown): { loss: number; grads: Grads } };

const root = path.join(path.dirname(new URL(import.meta.url).pathname), "..", "..");
beforeAll(() => {
  process.env["LORAFLOW_CUBLASLT"] = path.join(root, process.env["LORAFLOW_NATIVE_BUILD"] ?? "build", "fake", "libcublasLt.so");
});


/** x rounded to bf16 (nearest, ties to even), as the backend stores the base weights. */
function bf16(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer);
  u[0] = ((u[0]! + 0x7fff + ((u[0]! >>> 16) & 1)) >>> 16) << 16;
  return f[0]!;
}

const WEIGHTS = randomWeights(ARCH, 7);
const BF16_WEIGHTS = Object.fromEntries(Object.entries(WEIGHTS).map(([k, v]) => [k, Float64Array.from(v, bf16)]));

function run(backend: "cpu" | "cuda-emulated", dtype: "fp32" | "bf16", stages: [number, number][], fused: boolean, dropout: number) {
  const mbs = fused ? [microBatch(SEQUENCES, SEQUENCES)] : SEQUENCES.map((s) => microBatch([s], SEQUENCES));
  const weights = dtype === "bf16" ? BF16_WEIGHTS : WEIGHTS;
  return native.modelGrad({ config: ARCH, weights, adapters: adapters(dropout), stages, microBatches: mbs, precision: "double", backend, dtype });
}

/** The larger, over the adapters, of the error of its whole gradient (every site's dA and dB) relative to its norm. */
function gradientError(got: Grads, want: Grads): number {
  let worst = 0;
  want.forEach((sites, a) => {
    let diff = 0, norm = 0;
    for (const [site, ref] of Object.entries(sites)) {
      for (const which of ["A", "B"] as const) {
        const g = got[a]![site]![which];
        ref[which].forEach((x, i) => ((diff += (g[i]! - x) ** 2), (norm += x * x)));
      }
    }
    worst = Math.max(worst, Math.sqrt(diff / norm));
  });
  return worst;
}

describe("the CUDA backend on the emulated GPU", () => {
  it.each([
    { name: "one stage, fused", stages: [[0, 4]] as [number, number][], fused: true, dropout: 0 },
    { name: "two stages, one cutting a layer, apart, with dropout", stages: [[0, 1], [1, 4]] as [number, number][], fused: false, dropout: 0.2 },
    { name: "three stages, fused, with dropout", stages: [[0, 2], [2, 3], [3, 4]] as [number, number][], fused: true, dropout: 0.1 },
  ])("fp32 programs match the CPU engine ($name)", ({ stages, fused, dropout }) => {
    const cpu = run("cpu", "fp32", [[0, 4]], fused, dropout);
    const gpu = run("cuda-emulated", "fp32", stages, fused, dropout);
    expect(Math.abs(gpu.loss - cpu.loss) / cpu.loss).toBeLessThan(1e-5);
    expect(gradientError(gpu.grads, cpu.grads)).toBeLessThan(1e-5);
  });

  it.each([
    { name: "one stage, fused", stages: [[0, 4]] as [number, number][], fused: true, dropout: 0 },
    { name: "two stages, apart, with dropout", stages: [[0, 1], [1, 4]] as [number, number][], fused: false, dropout: 0.2 },
  ])("bf16 programs match the CPU engine within bf16's rounding ($name)", ({ stages, fused, dropout }) => {
    const cpu = run("cpu", "bf16", [[0, 4]], fused, dropout);
    const gpu = run("cuda-emulated", "bf16", stages, fused, dropout);
    expect(Math.abs(gpu.loss - cpu.loss) / cpu.loss).toBeLessThan(5e-3);
    expect(gradientError(gpu.grads, cpu.grads)).toBeLessThan(5e-2);
  });
});

describe("the CUDA backend refuses programs it cannot run", () => {
  it("200 corrupted programs end in a clear error or a clean run, never a crash (under ASan in test:sanitized)", () => {
    const mbs = [microBatch(SEQUENCES, SEQUENCES)];
    const spec = { config: ARCH, weights: BF16_WEIGHTS, adapters: adapters(0.1), stages: [[0, 1], [1, 4]] as [number, number][], microBatches: mbs, precision: "double", backend: "cuda-emulated" as const, dtype: "bf16" as const };
    // As the engine's loader lowers them for modelGrad (the tiny arch stands in for a job's).
    const programs = modelGradPrograms({ ...spec, microBatches: mbs.map((m) => ({ parts: m.parts.map((p) => ({ adapter: p.adapter, rows: p.rows })) })) } as unknown as Parameters<typeof modelGradPrograms>[0]);
    const next = rng(2024);
    const outcomes = { ran: 0, refused: 0 };
    for (let trial = 0; trial < 200; trial++) {
      const p = structuredClone(programs);
      // Every number in the programs is a place to corrupt: offsets, sizes, shapes, tensor ids, attributes.
      const numbers: [Record<string, unknown>, string][] = [];
      const walk = (o: unknown) => {
        if (!o || typeof o !== "object") return;
        for (const [k, v] of Object.entries(o)) typeof v === "number" ? numbers.push([o as Record<string, unknown>, k]) : walk(v);
      };
      walk(p);
      for (let i = 0; i < 3; i++) {
        const [o, k] = numbers[Math.floor(next() * numbers.length)]!;
        const v = o[k] as number;
        o[k] = [v + 1, v - 1, 2 * v, 0, v + 256][Math.floor(next() * 5)];
      }
      try {
        native.modelGrad({ ...spec, programs: p });
        outcomes.ran++;
      } catch (e) {
        expect((e as Error).message).toMatch(/^modelGrad: /);
        outcomes.refused++;
      }
    }
    expect(outcomes.refused).toBeGreaterThan(150);
  });
});
