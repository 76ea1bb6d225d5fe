/**
 * An independent, deliberately plain Llama forward in double precision, written from the Hugging
 * Face modelling code's definitions (not from the engine): the oracle that the engine's loss is
 * compared against. LoRA without dropout.
 */
import { MODULES, moduleShape, type TestAdapter, type TestMicroBatch, type TinyArch } from "./tiny-llama.js";

type Matrix = number[][];

function linear(x: Matrix, w: Float64Array, inDim: number, outDim: number): Matrix {
  return x.map((row) => {
    const y = new Array<number>(outDim).fill(0);
    for (let o = 0; o < outDim; o++) {
      let s = 0;
      for (let i = 0; i < inDim; i++) s += row[i]! * w[o * inDim + i]!;
      y[o] = s;
    }
    return y;
  });
}

function rmsnorm(x: Matrix, w: Float64Array, eps: number): Matrix {
  return x.map((row) => {
    const variance = row.reduce((s, v) => s + v * v, 0) / row.length;
    const r = 1 / Math.sqrt(variance + eps);
    return row.map((v, i) => w[i]! * (v * r));
  });
}

/**
 * inv_freq as transformers' modeling_rope_utils computes it on a float32 tensor: the default,
 * then `inv_freq /= factor` (linear), or _compute_llama3_parameters step by step (a Python
 * scalar over a tensor is `tensor.reciprocal() * scalar` in PyTorch; scalars meet the tensor
 * as float32).
 */
function invFrequencies(a: TinyArch): number[] {
  const f = Math.fround;
  const hd = a.headDim;
  const base = Array.from({ length: hd / 2 }, (_, i) => f(1 / f(Math.pow(a.ropeTheta, f((2 * i) / hd)))));
  const s = a.ropeScaling;
  if (!s) return base;
  if (s.rope_type === "linear") return base.map((x) => f(x / f(s.factor)));
  const old = s.original_max_position_embeddings!, low = s.low_freq_factor!, high = s.high_freq_factor!;
  const lowWavelen = f(old / low), highWavelen = f(old / high);
  return base.map((x) => {
    const wavelen = f(f(1 / x) * f(2 * Math.PI));
    const scaled = wavelen > lowWavelen ? f(x / f(s.factor)) : x;
    const smooth = f(f(f(f(1 / wavelen) * f(old)) - f(low)) / f(high - low));
    const smoothed = f(f(f(f(1 - smooth) * scaled) / f(s.factor)) + f(smooth * scaled));
    return !(wavelen < highWavelen) && !(wavelen > lowWavelen) ? smoothed : scaled;
  });
}

/** rotate_half: (x1, x2) -> (-x2, x1); q * cos + rotate_half(q) * sin, with cos/sin of cat(freqs, freqs). */
function rope(x: Matrix, heads: number, hd: number, pos: Int32Array, inv: number[]): Matrix {
  return x.map((row, t) => {
    const out = row.slice();
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < hd; i++) {
        const f = i % (hd / 2);
        const invFreq = inv[f]!;
        const angle = Math.fround(pos[t]! * invFreq);
        const rotated = i < hd / 2 ? -row[h * hd + i + hd / 2]! : row[h * hd + i - hd / 2]!;
        out[h * hd + i] = row[h * hd + i]! * Math.cos(angle) + rotated * Math.sin(angle);
      }
    }
    return out;
  });
}

export function referenceLoss(a: TinyArch, w: Record<string, Float64Array>, adapters: TestAdapter[], mb: TestMicroBatch): number {
  const T = mb.tokens.length;
  const inv = invFrequencies(a);
  const adapterOf = (t: number) => mb.parts.find((p) => t >= p.row0 && t < p.row0 + p.rows)!;
  const project = (x: Matrix, layer: number, m: (typeof MODULES)[number], weight: Float64Array): Matrix => {
    const { in: i, out: o } = moduleShape(a, m);
    const y = linear(x, weight, i, o);
    return y.map((row, t) => {
      const part = adapterOf(t);
      const site = adapters[part.adapter]!.sites[`${layer}.${m}`];
      if (!site) return row;
      const r = adapters[part.adapter]!.rank;
      const u = linear([x[t]!], site.A, i, r);
      const extra = linear(u, site.B, r, o)[0]!;
      return row.map((v, k) => v + adapters[part.adapter]!.scale * extra[k]!);
    });
  };
  let x: Matrix = Array.from(mb.tokens, (tok) => Array.from(w["model.embed_tokens.weight"]!.subarray(tok * a.hidden, (tok + 1) * a.hidden)));
  const hd = a.headDim;
  for (let l = 0; l < a.layers; l++) {
    const p = `model.layers.${l}.`;
    const n = rmsnorm(x, w[p + "input_layernorm.weight"]!, a.normEps);
    const q = rope(project(n, l, "q_proj", w[p + "self_attn.q_proj.weight"]!), a.heads, hd, mb.pos, inv);
    const k = rope(project(n, l, "k_proj", w[p + "self_attn.k_proj.weight"]!), a.kvHeads, hd, mb.pos, inv);
    const v = project(n, l, "v_proj", w[p + "self_attn.v_proj.weight"]!);
    const att: Matrix = [];
    for (let t = 0; t < T; t++) {
      const row = new Array<number>(a.heads * hd).fill(0);
      for (let h = 0; h < a.heads; h++) {
        const g = Math.floor(h / (a.heads / a.kvHeads));
        const scores: number[] = [];
        for (let j = 0; j < T; j++) {
          const visible = j <= t && mb.segStart[j] === mb.segStart[t];
          let s = 0;
          for (let d = 0; d < hd; d++) s += q[t]![h * hd + d]! * k[j]![g * hd + d]!;
          scores.push(visible ? s / Math.sqrt(hd) : -Infinity);
        }
        const max = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - max));
        const z = e.reduce((s1, v1) => s1 + v1, 0);
        for (let j = 0; j < T; j++) for (let d = 0; d < hd; d++) row[h * hd + d]! += (e[j]! / z) * v[j]![g * hd + d]!;
      }
      att.push(row);
    }
    const o = project(att, l, "o_proj", w[p + "self_attn.o_proj.weight"]!);
    x = x.map((row, t) => row.map((val, i) => val + o[t]![i]!));
    const n2 = rmsnorm(x, w[p + "post_attention_layernorm.weight"]!, a.normEps);
    const gate = project(n2, l, "gate_proj", w[p + "mlp.gate_proj.weight"]!);
    const up = project(n2, l, "up_proj", w[p + "mlp.up_proj.weight"]!);
    const act = gate.map((row, t) => row.map((g, i) => (g / (1 + Math.exp(-g))) * up[t]![i]!));
    const down = project(act, l, "down_proj", w[p + "mlp.down_proj.weight"]!);
    x = x.map((row, t) => row.map((val, i) => val + down[t]![i]!));
  }
  const n = rmsnorm(x, w["model.norm.weight"]!, a.normEps);
  const logits = linear(n, a.tieEmbeddings ? w["model.embed_tokens.weight"]! : w["lm_head.weight"]!, a.hidden, a.vocab);
  let loss = 0;
  logits.forEach((row, t) => {
    const target = mb.targets[t]!;
    if (target < 0) return;
    const max = Math.max(...row);
    const logz = max + Math.log(row.reduce((s, v) => s + Math.exp(v - max), 0));
    loss += adapterOf(t).gradScale * (logz - row[target]!);
  });
  return loss;
}
