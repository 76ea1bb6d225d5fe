import { describe, expect, it } from "vitest";
import { loadNative } from "../../runtime/native.js";
import { randomArray, rng } from "../helpers/random.js";

const native = loadNative();
type Inputs = Record<string, Float64Array | Int32Array | BigUint64Array>;

/**
 * Central differences of L = sum(out * dout) in double precision against the op's backward,
 * for every element of every differentiable input.
 */
function gradcheck(name: string, params: Record<string, number>, inputs: Inputs, wrt: string[], seed = 1) {
  const next = rng(seed);
  const forward = (x: Inputs) => native.op(name, params, x).out;
  const out = forward(inputs);
  const dout = randomArray(next, out.length);
  const analytic = native.op(name, params, inputs, dout).grads;
  const loss = (x: Inputs) => forward(x).reduce((s, v, i) => s + v * dout[i]!, 0);
  let worst = 0;
  for (const key of wrt) {
    const base = inputs[key] as Float64Array;
    const grad = analytic[key]!;
    expect(grad.length, `gradient of ${key}`).toBe(base.length);
    for (let i = 0; i < base.length; i++) {
      const h = 1e-6 * Math.max(1, Math.abs(base[i]!));
      const plus = Float64Array.from(base);
      const minus = Float64Array.from(base);
      plus[i]! += h;
      minus[i]! -= h;
      const numeric = (loss({ ...inputs, [key]: plus }) - loss({ ...inputs, [key]: minus })) / (2 * h);
      const error = Math.abs(numeric - grad[i]!) / Math.max(1e-3, Math.abs(numeric) + Math.abs(grad[i]!));
      worst = Math.max(worst, error);
      expect(error, `${name}: d/d${key}[${i}] analytic ${grad[i]} numeric ${numeric}`).toBeLessThan(1e-6);
    }
  }
  return worst;
}

const next = rng(42);
const segs = (lengths: number[]) => Int32Array.from(lengths.flatMap((n, s) => Array.from({ length: n }, () => lengths.slice(0, s).reduce((a, b) => a + b, 0))));
const positions = (lengths: number[]) => Int32Array.from(lengths.flatMap((n) => Array.from({ length: n }, (_, i) => i)));
const keys = (n: number, seed: number) => BigUint64Array.from({ length: n }, (_, i) => BigInt(seed) * 1000003n + BigInt(i) * 7919n);

interface GradCase {
  name: string;
  op?: string;
  params: Record<string, number>;
  inputs: Inputs;
  wrt: string[];
}

describe("operator gradients match finite differences (double precision)", () => {
  it.each<GradCase>([
    { name: "rmsnorm", params: { T: 3, C: 8, eps: 1e-5 }, inputs: { x: randomArray(next, 24), weight: randomArray(next, 8) }, wrt: ["x"] },
    { name: "rope", params: { T: 5, heads: 2, headDim: 8, theta: 10000 }, inputs: { x: randomArray(next, 80), pos: positions([3, 2]) }, wrt: ["x"] },
    {
      name: "attention (causal, GQA 4/2, two packed segments)",
      op: "attention",
      params: { T: 6, heads: 4, kvHeads: 2, headDim: 4 },
      inputs: { q: randomArray(next, 96), k: randomArray(next, 48), v: randomArray(next, 48), segStart: segs([4, 2]) },
      wrt: ["q", "k", "v"],
    },
    {
      name: "attention (multi-head, one segment)",
      op: "attention",
      params: { T: 5, heads: 2, kvHeads: 2, headDim: 6 },
      inputs: { q: randomArray(next, 60, 2), k: randomArray(next, 60, 2), v: randomArray(next, 60), segStart: segs([5]) },
      wrt: ["q", "k", "v"],
    },
    { name: "swiglu", params: { n: 12 }, inputs: { gate: randomArray(next, 12, 3), up: randomArray(next, 12) }, wrt: ["gate", "up"] },
    {
      name: "cross_entropy (with ignored positions)",
      op: "cross_entropy",
      params: { T: 4, V: 7, gradScale: 1 / 3 },
      inputs: { logits: randomArray(next, 28, 2), targets: Int32Array.from([3, -100, 0, 6]) },
      wrt: ["logits"],
    },
    { name: "linear", params: { T: 3, C: 5, OC: 4 }, inputs: { x: randomArray(next, 15), W: randomArray(next, 20) }, wrt: ["x"] },
    {
      name: "lora (no dropout)",
      op: "lora",
      params: { n: 4, in: 6, out: 5, rank: 2, scale: 2, dropout: 0, moduleKey: 3 },
      inputs: { x: randomArray(next, 24), A: randomArray(next, 12), B: randomArray(next, 10), rowKeys: keys(4, 1) },
      wrt: ["x", "A", "B"],
    },
    {
      name: "lora (dropout 0.3, mask included)",
      op: "lora",
      params: { n: 4, in: 6, out: 5, rank: 3, scale: 0.5, dropout: 0.3, moduleKey: 9 },
      inputs: { x: randomArray(next, 24), A: randomArray(next, 18), B: randomArray(next, 15), rowKeys: keys(4, 2) },
      wrt: ["x", "A", "B"],
    },
  ])("$name", ({ name, op, params, inputs, wrt }) => {
    gradcheck(op ?? name, params, inputs, wrt);
  });
});

describe("operator forwards", () => {
  it("attention never looks across a packed boundary or ahead", () => {
    const params = { T: 5, heads: 1, kvHeads: 1, headDim: 2 };
    const q = randomArray(next, 10);
    const k = randomArray(next, 10);
    const v = randomArray(next, 10);
    const seg = segs([3, 2]);
    const base = native.op("attention", params, { q, k, v, segStart: seg }).out;
    // Changing the second segment's keys and values leaves the first segment's outputs alone,
    // and changing row 1 leaves row 0 alone.
    const v2 = Float64Array.from(v);
    v2[6] = 99;
    v2[3] = 42;
    const changed = native.op("attention", params, { q, k, v: v2, segStart: seg }).out;
    expect(Array.from(changed.slice(0, 2))).toEqual(Array.from(base.slice(0, 2)));
    expect(Array.from(changed.slice(2, 6))).not.toEqual(Array.from(base.slice(2, 6)));
  });

  it("rmsnorm matches the Hugging Face formula", () => {
    const x = Float64Array.from([1, -2, 3, 0.5]);
    const w = Float64Array.from([1, 2, 0.5, -1]);
    const out = native.op("rmsnorm", { T: 1, C: 4, eps: 1e-6 }, { x, weight: w }).out;
    const r = 1 / Math.sqrt((1 + 4 + 9 + 0.25) / 4 + 1e-6);
    expect(Array.from(out)).toEqual(Array.from(x, (v, i) => w[i]! * (v * r)));
  });

  it("rope rotates element i with i + head_dim/2 by pos * theta^(-2i/d)", () => {
    const x = Float64Array.from([1, 0, 0, 0, 0, 0, 0, 0]);
    const out = native.op("rope", { T: 1, heads: 1, headDim: 8, theta: 10000 }, { x, pos: Int32Array.from([3]) }).out;
    expect(out[0]).toBeCloseTo(Math.cos(3), 6);
    expect(out[4]).toBeCloseTo(Math.sin(3), 6);
  });

  it("lora dropout keeps about 1 - p of the inputs, and the same ones for the same keys", () => {
    const n = 64;
    const params = { n, in: 64, out: 1, rank: 64, scale: 1, dropout: 0.25, moduleKey: 5 };
    // A = identity and B = ones makes out[row] the sum of the kept, rescaled inputs of the row.
    const A = new Float64Array(64 * 64);
    for (let i = 0; i < 64; i++) A[i * 64 + i] = 1;
    const inputs = { x: new Float64Array(n * 64).fill(1), A, B: new Float64Array(64).fill(1), rowKeys: keys(n, 7) };
    const out = native.op("lora", params, inputs).out;
    const kept = out.reduce((s, v) => s + v * 0.75, 0) / (n * 64);
    expect(kept).toBeGreaterThan(0.72);
    expect(kept).toBeLessThan(0.78);
    expect(Array.from(native.op("lora", params, inputs).out)).toEqual(Array.from(out));
    expect(Array.from(native.op("lora", params, { ...inputs, rowKeys: keys(n, 8) }).out)).not.toEqual(Array.from(out));
  });

  it("bad input is an exception with a message, never a crash", () => {
    expect(() => native.op("nope", {}, {})).toThrow(/unknown op `nope`/);
    expect(() => native.op("swiglu", { n: 3 }, { gate: new Float64Array(2), up: new Float64Array(3) })).toThrow(/`gate` has 2 elements, expected 3/);
    expect(() => native.op("attention", { T: 2, heads: 3, kvHeads: 2, headDim: 2 }, {})).toThrow(/multiple of kvHeads/);
    expect(() => native.op("cross_entropy", { T: 1, V: 2, gradScale: 1 }, { logits: new Float64Array(2), targets: Int32Array.from([5]) })).toThrow(/out of range/);
  });
});
