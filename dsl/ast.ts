import type { Span } from "./span.js";

/** The raw content of a block body, in source order, before the property catalog gives it roles. */
export type Atom =
  | { kind: "word"; text: string; span: Span }
  | { kind: "string"; text: string; span: Span }
  | { kind: "number"; value: number; text: string; span: Span }
  | { kind: "quantity"; text: string; span: Span }
  | { kind: "group"; items: Atom[]; span: Span };

export interface Name {
  text: string;
  span: Span;
}

/** A value after checking against the catalog: its kind is what the property asked for. */
export type Value =
  | { kind: "int"; value: number; span: Span }
  | { kind: "number"; value: number; span: Span }
  | { kind: "bool"; value: boolean; span: Span }
  | { kind: "word"; value: string; span: Span }
  | { kind: "text"; value: string; span: Span }
  | { kind: "bytes"; value: number; span: Span }
  | { kind: "rate"; value: number; span: Span }
  | { kind: "auto"; span: Span };

export interface PropertyAst {
  key: string;
  keySpan: Span;
  /** From the key to the last value (or the nested block's closing brace). */
  span: Span;
  values: Value[];
  /** The `{ ... }` that follows, for properties that take one (`optimizer adamw { lr 1e-4 }`). */
  block?: BodyAst;
}

export interface BodyAst {
  properties: PropertyAst[];
  span: Span;
}

export type BlockKind = "model" | "adapter" | "cluster" | "plan";

export interface BlockAst {
  kind: BlockKind;
  kindSpan: Span;
  name?: Name;
  body: BodyAst;
  span: Span;
}

export interface JobAst {
  blocks: BlockAst[];
}

/** The property of a body with this key, if given. Duplicates are reported by the reader, which keeps the first. */
export function findProperty(body: BodyAst, key: string): PropertyAst | undefined {
  return body.properties.find((p) => p.key === key);
}
