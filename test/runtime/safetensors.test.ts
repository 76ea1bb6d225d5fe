import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encodeSafetensors, readSafetensors } from "../../runtime/weights/safetensors.js";
import { tempDir } from "../helpers/hf-model.js";

let dir: string;
beforeAll(() => {
  dir = tempDir("loraflow-st-");
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A safetensors file holding one tensor of raw little-endian 16-bit values. */
function write16(file: string, dtype: "F16" | "BF16", values: number[]): void {
  const header = JSON.stringify({ t: { dtype, shape: [values.length], data_offsets: [0, 2 * values.length] } });
  const head = Buffer.alloc(8);
  head.writeBigUInt64LE(BigInt(header.length));
  const body = Buffer.alloc(2 * values.length);
  values.forEach((v, i) => body.writeUInt16LE(v, 2 * i));
  fs.writeFileSync(file, Buffer.concat([head, Buffer.from(header), body]));
}

describe("safetensors", () => {
  it("converts fp16 exactly: normals, subnormals, infinities, signed zero", () => {
    const file = path.join(dir, "f16.safetensors");
    write16(file, "F16", [0x3c00, 0xc000, 0x3555, 0x0001, 0x7c00, 0x8000, 0x7bff]);
    const t = readSafetensors(file).get("t")!;
    expect(Array.from(t.data)).toEqual([1, -2, Math.fround(0.333251953125), Math.fround(2 ** -24), Infinity, -0, 65504]);
  });

  it("converts bf16 exactly", () => {
    const file = path.join(dir, "bf16.safetensors");
    write16(file, "BF16", [0x3f80, 0xc040, 0x3eab]);
    expect(Array.from(readSafetensors(file).get("t")!.data)).toEqual([1, -3, Math.fround(0.333984375)]);
  });

  it("writes what it reads back, header padded to 8 bytes", () => {
    const tensors = new Map([
      ["b", { shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6]) }],
      ["a", { shape: [1], data: Float32Array.from([-0.5]) }],
    ]);
    const bytes = encodeSafetensors(tensors, { format: "pt" });
    expect(Number(bytes.readBigUInt64LE(0)) % 8).toBe(0);
    const file = path.join(dir, "rt.safetensors");
    fs.writeFileSync(file, bytes);
    const back = readSafetensors(file);
    expect([...back.keys()].sort()).toEqual(["a", "b"]);
    expect(back.get("b")).toEqual(tensors.get("b"));
  });

  it.each([
    { name: "a truncated header", bytes: Buffer.from([200, 0, 0, 0, 0, 0, 0, 0, 123]), pattern: /declares a 200-byte header in a 9-byte file/ },
    { name: "an int8 tensor", bytes: (() => {
        const h = JSON.stringify({ t: { dtype: "I8", shape: [1], data_offsets: [0, 1] } });
        const head = Buffer.alloc(8);
        head.writeBigUInt64LE(BigInt(h.length));
        return Buffer.concat([head, Buffer.from(h), Buffer.alloc(1)]);
      })(), pattern: /`t` is I8; loraflow loads F32, F16 and BF16/ },
  ])("refuses $name", ({ bytes, pattern }) => {
    const file = path.join(dir, "bad.safetensors");
    fs.writeFileSync(file, bytes);
    expect(() => readSafetensors(file)).toThrow(pattern);
  });
});
