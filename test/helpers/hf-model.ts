import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

export interface TensorSpec {
  name: string;
  dtype: "F32" | "F16" | "BF16" | "I8";
  shape: number[];
}

const BYTES = { F32: 4, F16: 2, BF16: 2, I8: 1 } as const;

/** bf16 bytes of a float (round to nearest even), as PyTorch converts. */
export function toBf16(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer)[0]!;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

/** The float a bf16 value stands for. */
export function fromBf16(h: number): number {
  return new Float32Array(new Uint32Array([h << 16]).buffer)[0]!;
}

/**
 * Writes a safetensors file. Tensors without `data` are zero-filled (the compiler reads headers
 * only); with it, values are stored as F32 or rounded to BF16.
 */
export function writeSafetensors(file: string, tensors: (TensorSpec & { data?: ArrayLike<number> })[]): void {
  const header: Record<string, unknown> = { __metadata__: { format: "pt" } };
  let offset = 0;
  for (const t of tensors) {
    const bytes = t.shape.reduce((a, b) => a * b, 1) * BYTES[t.dtype];
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (json.length % 8)) % 8);
  const head = Buffer.alloc(8);
  head.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  const body = Buffer.alloc(offset);
  let at = 0;
  for (const t of tensors) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (t.data) {
      for (let i = 0; i < n; i++) {
        if (t.dtype === "F32") body.writeFloatLE(t.data[i]!, at + 4 * i);
        else if (t.dtype === "BF16") body.writeUInt16LE(toBf16(t.data[i]!), at + 2 * i);
        else throw new Error(`writeSafetensors: data for ${t.dtype} is not supported`);
      }
    }
    at += n * BYTES[t.dtype];
  }
  fs.writeFileSync(file, Buffer.concat([head, Buffer.from(json), body]));
}

export interface TinyConfig {
  layers: number;
  hidden: number;
  heads: number;
  kvHeads: number;
  ffn: number;
  vocab: number;
  tie?: boolean;
}

export const TINY: TinyConfig = { layers: 2, hidden: 16, heads: 4, kvHeads: 2, ffn: 32, vocab: 64 };

export function llamaConfigJson(c: TinyConfig): Record<string, unknown> {
  return {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    hidden_act: "silu",
    num_hidden_layers: c.layers,
    hidden_size: c.hidden,
    num_attention_heads: c.heads,
    num_key_value_heads: c.kvHeads,
    intermediate_size: c.ffn,
    vocab_size: c.vocab,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    max_position_embeddings: 128,
    tie_word_embeddings: c.tie ?? false,
    torch_dtype: "float32",
  };
}

export function llamaTensors(c: TinyConfig, dtype: TensorSpec["dtype"] = "F32"): TensorSpec[] {
  const hd = c.hidden / c.heads;
  const t: TensorSpec[] = [{ name: "model.embed_tokens.weight", dtype, shape: [c.vocab, c.hidden] }];
  for (let i = 0; i < c.layers; i++) {
    const p = `model.layers.${i}`;
    t.push(
      { name: `${p}.input_layernorm.weight`, dtype, shape: [c.hidden] },
      { name: `${p}.self_attn.q_proj.weight`, dtype, shape: [c.heads * hd, c.hidden] },
      { name: `${p}.self_attn.k_proj.weight`, dtype, shape: [c.kvHeads * hd, c.hidden] },
      { name: `${p}.self_attn.v_proj.weight`, dtype, shape: [c.kvHeads * hd, c.hidden] },
      { name: `${p}.self_attn.o_proj.weight`, dtype, shape: [c.hidden, c.heads * hd] },
      { name: `${p}.post_attention_layernorm.weight`, dtype, shape: [c.hidden] },
      { name: `${p}.mlp.gate_proj.weight`, dtype, shape: [c.ffn, c.hidden] },
      { name: `${p}.mlp.up_proj.weight`, dtype, shape: [c.ffn, c.hidden] },
      { name: `${p}.mlp.down_proj.weight`, dtype, shape: [c.hidden, c.ffn] },
    );
  }
  t.push({ name: "model.norm.weight", dtype, shape: [c.hidden] });
  if (!c.tie) t.push({ name: "lm_head.weight", dtype, shape: [c.vocab, c.hidden] });
  return t;
}

/**
 * A Hugging Face Llama folder: config.json and weights in one file, or in `shards` files with
 * an index. `edit` may change the tensor list first (drop one, change a shape).
 */
export function writeLlamaFolder(
  dir: string,
  c: TinyConfig = TINY,
  options: { shards?: number; edit?: (t: TensorSpec[]) => TensorSpec[]; config?: Record<string, unknown> } = {},
): string {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify({ ...llamaConfigJson(c), ...options.config }, null, 2));
  const tensors = (options.edit ?? ((t) => t))(llamaTensors(c));
  const shards = options.shards ?? 1;
  if (shards === 1) {
    writeSafetensors(path.join(dir, "model.safetensors"), tensors);
    return dir;
  }
  const weightMap: Record<string, string> = {};
  const per = Math.ceil(tensors.length / shards);
  for (let s = 0; s < shards; s++) {
    const name = `model-${String(s + 1).padStart(5, "0")}-of-${String(shards).padStart(5, "0")}.safetensors`;
    const part = tensors.slice(s * per, (s + 1) * per);
    writeSafetensors(path.join(dir, name), part);
    for (const t of part) weightMap[t.name] = name;
  }
  fs.writeFileSync(path.join(dir, "model.safetensors.index.json"), JSON.stringify({ metadata: {}, weight_map: weightMap }, null, 2));
  return dir;
}

/** A fresh temporary folder. */
export function tempDir(prefix = "loraflow-test-"): string {
  return fs.mkdtempSync(path.join(fs.realpathSync(os.tmpdir()), prefix));
}
