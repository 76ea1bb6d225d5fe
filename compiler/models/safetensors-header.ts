import { jsonSyntaxReason } from "../../dsl/index.js";
import type { CompileHost } from "../host.js";

/** Bytes per element of each safetensors dtype. */
export const DTYPE_BYTES: Readonly<Record<string, number>> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, U16: 2, U32: 4, U64: 8, BOOL: 1, F8_E4M3: 1, F8_E5M2: 1,
};

export interface TensorHeader {
  dtype: string;
  shape: number[];
  /** [begin, end) in the data section, which starts after the header. */
  offsets: [number, number];
}

export type HeaderReading =
  | { ok: true; tensors: Map<string, TensorHeader>; metadata: Record<string, string>; dataOffset: number }
  | { ok: false; error: string };

/** Headers past this are not weights files a person made; refusing them bounds what we read. */
const MAX_HEADER_BYTES = 100 * 2 ** 20;

/**
 * Reads and checks a safetensors header without touching the tensor data: u64 little-endian
 * header length, a JSON object of tensors, each with a dtype, a shape and data offsets that
 * agree with the shape and stay inside the file, laid end to end without overlap or gap (as the
 * format requires, and as Hugging Face's reader checks).
 */
export function readSafetensorsHeader(host: CompileHost, file: string): HeaderReading {
  let size: number;
  let head: Uint8Array;
  try {
    size = host.size(file);
    head = host.readRange(file, 0, 8);
  } catch (e) {
    return { ok: false, error: `cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})` };
  }
  if (head.length < 8) return { ok: false, error: `is ${size} bytes, too short for a safetensors header` };
  const length = Number(new DataView(head.buffer, head.byteOffset, 8).getBigUint64(0, true));
  if (length > size - 8 || length > MAX_HEADER_BYTES) {
    return { ok: false, error: `declares a ${length}-byte header in a ${size}-byte file` };
  }
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(host.readRange(file, 8, length)));
  } catch (e) {
    return { ok: false, error: `has a header that is not valid JSON (${jsonSyntaxReason(e)})` };
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) return { ok: false, error: "has a header that is not a JSON object" };
  const dataSize = size - 8 - length;
  const tensors = new Map<string, TensorHeader>();
  const metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(json as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (typeof entry !== "object" || entry === null || Array.isArray(entry) || !Object.values(entry).every((v) => typeof v === "string")) {
        return { ok: false, error: "has a __metadata__ that is not an object of strings" };
      }
      Object.assign(metadata, entry);
      continue;
    }
    const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown } | null;
    const bad = (why: string): HeaderReading => ({ ok: false, error: `has tensor \`${name}\` with ${why}` });
    if (typeof e !== "object" || e === null) return bad("an entry that is not an object");
    if (typeof e.dtype !== "string" || DTYPE_BYTES[e.dtype] === undefined) return bad(`unknown dtype ${JSON.stringify(e.dtype)}`);
    if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) return bad(`shape ${JSON.stringify(e.shape)}`);
    const offsets = e.data_offsets;
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) {
      return bad(`data_offsets ${JSON.stringify(offsets)}`);
    }
    const [begin, end] = offsets as [number, number];
    const bytes = (e.shape as number[]).reduce((a, b) => a * b, 1) * DTYPE_BYTES[e.dtype]!;
    if (end < begin || end - begin !== bytes) return bad(`data_offsets [${begin}, ${end}] that do not hold ${bytes} bytes of ${e.dtype} ${JSON.stringify(e.shape)}`);
    if (end > dataSize) return bad(`data past the end of the file (offset ${end} > ${dataSize})`);
    tensors.set(name, { dtype: e.dtype, shape: e.shape as number[], offsets: [begin, end] });
  }
  // Sorted by offset, each tensor must start where the one before ended: two tensors sharing
  // bytes would alias each other, and a gap is data no tensor owns.
  const sorted = [...tensors].sort((a, b) => a[1].offsets[0] - b[1].offsets[0] || a[1].offsets[1] - b[1].offsets[1]);
  let at = 0;
  for (const [name, t] of sorted) {
    if (t.offsets[0] < at) return { ok: false, error: `has tensor \`${name}\` overlapping the tensor before it (bytes ${t.offsets[0]} < ${at})` };
    if (t.offsets[0] > at) return { ok: false, error: `has ${t.offsets[0] - at} bytes before tensor \`${name}\` that no tensor holds` };
    at = t.offsets[1];
  }
  if (at !== dataSize) return { ok: false, error: `has ${dataSize - at} bytes after its last tensor that no tensor holds` };
  return { ok: true, tensors, metadata, dataOffset: 8 + length };
}
