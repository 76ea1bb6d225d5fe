import * as fs from "node:fs";
import { nodeHost, openRegularFile, readSafetensorsHeader } from "../../compiler/index.js";
import type { DiagnosticName } from "../../dsl/index.js";
import { fileError, RunError } from "../errors.js";

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

export interface SafetensorsFile {
  tensors: Map<string, Tensor>;
  metadata: Record<string, string>;
}

/**
 * Reads tensors from a safetensors file, converted to float32. `wanted` limits which (all when
 * absent). The header is checked as the compiler checks it (JSON, dtypes, shapes, offsets laid
 * end to end inside the file) before any data is read; errors carry `kind`'s code.
 */
export function readSafetensorsFile(file: string, kind: DiagnosticName, wanted?: (name: string) => boolean): SafetensorsFile {
  const header = readSafetensorsHeader(nodeHost, file);
  if (!header.ok) throw new RunError(kind, `${file} ${header.error}`);
  let fd: number;
  try {
    fd = openRegularFile(file);
  } catch (e) {
    throw fileError(kind, file, "cannot be read", e);
  }
  try {
    const tensors = new Map<string, Tensor>();
    for (const [name, info] of header.tensors) {
      if (wanted && !wanted(name)) continue;
      if (BYTES[info.dtype] === undefined) throw new RunError(kind, `${file}: \`${name}\` is ${info.dtype}; loraflow loads F32, F16 and BF16`);
      const [begin, end] = info.offsets;
      const data = Buffer.alloc(end - begin);
      // The file may have changed since its header was read: a short read is a broken file, not zeros.
      if (fs.readSync(fd, data, 0, end - begin, header.dataOffset + begin) !== end - begin) throw new RunError(kind, `${file}: ended inside tensor \`${name}\``);
      tensors.set(name, { shape: info.shape, data: toFloat32(data, info.dtype, info.shape.reduce((a, b) => a * b, 1)) });
    }
    return { tensors, metadata: header.metadata };
  } finally {
    fs.closeSync(fd);
  }
}

/** The tensors of a safetensors file (see readSafetensorsFile). */
export function readSafetensors(file: string, wanted?: (name: string) => boolean, kind: DiagnosticName = "weightsInvalid"): Map<string, Tensor> {
  return readSafetensorsFile(file, kind, wanted).tensors;
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
