import { describe, expect, it } from "vitest";
import { loadNative } from "../../runtime/native.js";
import { referenceLoss } from "../helpers/reference-llama.js";
import { microBatch, randomWeights, type TestAdapter, type TestMicroBatch } from "../helpers/tiny-llama.js";
import { adapters, ARCH, SEQUENCES } from "../helpers/two-adapters.js";

const native = loadNative() as unknown as {
  modelGrad(spec: unknown): { loss: number; grads: Record<string, { A: Float64Array; B: Float64Array }>[] };
};

const WEIGHTS = randomWeights(ARCH, 7);

function modelGrad(mbs: TestMicroBatch[], adapterList: TestAdapter[], stages: [number, number][], precision = "double", arch = ARCH, weights = WEIGHTS) {
  return native.modelGrad({ config: arch, weights, adapters: adapterList, stages, microBatches: mbs, precision });
}

const fused = () => [microBatch(SEQUENCES, SEQUENCES)];
const unfused = () => SEQUENCES.map((s) => microBatch([s], SEQUENCES));
const ONE_STAGE: [number, number][] = [[0, 4]];

describe("whole-model LoRA gradients", () => {
  it.each([
    { name: "no dropout", dropout: 0 },
    { name: "dropout 0.2 (mask included)", dropout: 0.2 },
  ])("match finite differences of the loss end to end, two adapters fused ($name)", ({ dropout }) => {
    const list = adapters(dropout);
    const mbs = fused();
    const { grads } = modelGrad(mbs, list, [[0, 1], [1, 4]]);
    // A spread of elements of every site of both adapters.
    let checked = 0;
    list.forEach((adapter, a) => {
      for (const [site, arrays] of Object.entries(adapter.sites)) {
        for (const which of ["A", "B"] as const) {
          const base = arrays[which];
          for (const i of [0, Math.floor(base.length / 2), base.length - 1]) {
            const h = 1e-5;
            const perturbed = (delta: number) => {
              const copy = structuredClone(list);
              copy[a]!.sites[site]![which][i]! += delta;
              return modelGrad(mbs, copy, ONE_STAGE).loss;
            };
            const numeric = (perturbed(h) - perturbed(-h)) / (2 * h);
            const analytic = grads[a]![site]![which][i]!;
            const error = Math.abs(numeric - analytic) / Math.max(1e-6, Math.abs(numeric) + Math.abs(analytic));
            expect(error, `adapter ${a} ${site}.${which}[${i}]: analytic ${analytic}, numeric ${numeric}`).toBeLessThan(1e-6);
            checked++;
          }
        }
      }
    });
    expect(checked).toBe(2 * (8 + 8) * 3);
  });

  it("the loss equals an independent reference implementation's", () => {
    const list = adapters(0);
    for (const mb of [...fused(), ...unfused()]) {
      const engine = modelGrad([mb], list, ONE_STAGE).loss;
      const reference = referenceLoss(ARCH, WEIGHTS, list, mb);
      expect(Math.abs(engine - reference) / Math.abs(reference)).toBeLessThan(1e-12);
    }
  });

  it("tied embeddings: the head reads the embedding matrix", () => {
    const arch = { ...ARCH, tieEmbeddings: true };
    const weights = randomWeights(arch, 8);
    const list = adapters(0);
    const mb = fused()[0]!;
    expect(modelGrad([mb], list, ONE_STAGE, "double", arch, weights).loss).toBeCloseTo(referenceLoss(arch, weights, list, mb), 10);
  });

  it.each([
    { name: "2 stages", stages: [[0, 2], [2, 4]] as [number, number][] },
    { name: "3 stages, one splitting a layer", stages: [[0, 1], [1, 3], [3, 4]] as [number, number][] },
    { name: "4 stages", stages: [[0, 1], [1, 2], [2, 3], [3, 4]] as [number, number][] },
  ])("are bitwise the same cut into $name, and fused or not", ({ stages }) => {
    const list = adapters(0.1);
    const reference = modelGrad(unfused(), list, ONE_STAGE);
    for (const mbs of [fused(), unfused()]) {
      const run = modelGrad(mbs, list, stages);
      // The loss sums micro-batches in another order when fused; the gradients accumulate per
      // adapter in the same order either way, so they are equal to the bit.
      expect(run.loss).toBeCloseTo(reference.loss, 12);
      expect(run.grads).toEqual(reference.grads);
    }
  });

  it("float agrees with double to float precision", () => {
    const list = adapters(0.1);
    const d = modelGrad(fused(), list, ONE_STAGE, "double");
    const f = modelGrad(fused(), list, [[0, 3], [3, 4]], "float");
    expect(Math.abs(f.loss - d.loss) / d.loss).toBeLessThan(1e-5);
    for (const [site, arrays] of Object.entries(f.grads[0]!)) {
      const ref = d.grads[0]![site]!;
      const scale = Math.max(...Array.from(ref.A, Math.abs));
      arrays.A.forEach((v, i) => expect(Math.abs(v - ref.A[i]!), site).toBeLessThan(1e-4 * scale));
    }
  });

  it("bad specs are exceptions that name the problem", () => {
    const mb = fused()[0]!;
    expect(() => modelGrad([mb], adapters(0), [[0, 3]])).toThrow(/cover blocks \[0, 3\) of 4/);
    expect(() => modelGrad([{ ...mb, tokens: Int32Array.from(mb.tokens, () => 99) }], adapters(0), ONE_STAGE)).toThrow(/outside the vocabulary/);
    const { ["lm_head.weight"]: _, ...noHead } = WEIGHTS;
    expect(() => modelGrad([mb], adapters(0), ONE_STAGE, "double", ARCH, noHead)).toThrow(/`lm_head.weight` is missing/);
    expect(() => modelGrad([{ ...mb, parts: mb.parts.slice(1) }], adapters(0), ONE_STAGE)).toThrow(/parts must cover the rows in order/);
    const badSite = { ...adapters(0)[0]!, sites: { "x.q_proj": adapters(0)[0]!.sites["0.q_proj"]! } };
    expect(() => modelGrad([mb], [badSite, adapters(0)[1]!], ONE_STAGE)).toThrow(/site `x\.q_proj` names no LoRA site of the model/);
  });
});
