import * as fs from "node:fs";
import { RunError } from "../errors.js";

export interface Tensor {
  shape: number[];
  data: Float32Array;
}

const BYTES: Record<string, number> = { F32: 4, F16: 2, BF16: 2 };

function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * 2 ** -14 * (frac / 1024);
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * 2 ** (exp - 15) * (1 + frac / 1024);
}

/** Decodes little-endian F32, F16 or BF16 bytes to float32 (bf16 exactly, fp16 exactly). */
function toFloat32(bytes: Uint8Array, dtype: string, count: number): Float32Array {
  const out = new Float32Array(count);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dtype === "F32") for (let i = 0; i < count; i++) out[i] = view.getFloat32(4 * i, true);
  else if (dtype === "BF16") {
    const u32 = new Uint32Array(out.buffer);
    for (let i = 0; i < count; i++) u32[i] = view.getUint16(2 * i, true) << 16;
  } else for (let i = 0; i < count; i++) out[i] = halfToFloat(view.getUint16(2 * i, true));
  return out;
}

/**
 * Reads tensors from a safetensors file, converted to float32. `wanted` limits which (all when
 * absent). The header is checked (length, JSON, offsets inside the file) before any data is read.
 */
export function readSafetensors(file: string, wanted?: (name: string) => boolean): Map<string, Tensor> {
  let fd: number;
  try {
    fd = fs.openSync(file, "r");
  } catch (e) {
    throw new RunError(`${file}: cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  try {
    const size = fs.fstatSync(fd).size;
    const head = Buffer.alloc(8);
    if (fs.readSync(fd, head, 0, 8, 0) < 8) throw new RunError(`${file}: too short for a safetensors header`);
    const length = Number(head.readBigUInt64LE(0));
    if (length > size - 8 || length > 100 * 2 ** 20) throw new RunError(`${file}: declares a ${length}-byte header in a ${size}-byte file`);
    const headerBytes = Buffer.alloc(length);
    fs.readSync(fd, headerBytes, 0, length, 8);
    let header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
    try {
      header = JSON.parse(headerBytes.toString("utf8"));
    } catch (e) {
      throw new RunError(`${file}: header is not valid JSON (${(e as Error).message})`);
    }
    const tensors = new Map<string, Tensor>();
    for (const [name, info] of Object.entries(header)) {
      if (name === "__metadata__" || (wanted && !wanted(name))) continue;
      const bytes = BYTES[info.dtype];
      if (bytes === undefined) throw new RunError(`${file}: \`${name}\` is ${info.dtype}; loraflow loads F32, F16 and BF16`);
      const count = info.shape.reduce((a, b) => a * b, 1);
      const [begin, end] = info.data_offsets;
      if (end - begin !== count * bytes || 8 + length + end > size) throw new RunError(`${file}: \`${name}\` has data offsets that do not fit its shape or the file`);
      const data = Buffer.alloc(end - begin);
      fs.readSync(fd, data, 0, end - begin, 8 + length + begin);
      tensors.set(name, { shape: info.shape, data: toFloat32(data, info.dtype, count) });
    }
    return tensors;
  } finally {
    fs.closeSync(fd);
  }
}

/** A safetensors file of float32 tensors, as bytes (header padded to 8 bytes, as the format asks). */
export function encodeSafetensors(tensors: Map<string, Tensor>, metadata: Record<string, string> = {}): Buffer {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  const names = [...tensors.keys()].sort();
  for (const name of names) {
    const t = tensors.get(name)!;
    header[name] = { dtype: "F32", shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const head = Buffer.alloc(8);
  head.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  const parts: Buffer[] = [head, Buffer.from(json, "utf8")];
  for (const name of names) {
    const t = tensors.get(name)!;
    parts.push(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  }
  return Buffer.concat(parts);
}
