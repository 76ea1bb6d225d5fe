import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { compile, Diagnostics, hasErrors } from "../../compiler/index.js";
import { positionAt } from "../../dsl/index.js";

const EXAMPLES = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "examples");
const SOURCES = fs.readdirSync(EXAMPLES).filter((f) => f.endsWith(".lf")).map((f) => fs.readFileSync(path.join(EXAMPLES, f), "utf8"));
const CODES = new Set<string>(Object.values(Diagnostics).map((d) => d.code));

/** Pieces a job file is made of, and pieces that break one. */
const FRAGMENTS = [
  "model", "adapter", "cluster", "plan", "optimizer", "{", "}", "{ }", "\n", " ", "#", "//", '"', '"x"', "\\",
  "rank", "alpha", "targets", "q_proj", "all", "data", '"data/math.jsonl"', "layers", "hidden", "heads", "kv_heads",
  "ffn", "vocab", "arch", "llama", "from", '"."', "stages", "auto", "schedule", "batch", "mlora", "gpus", "memory",
  "48GB", "25GB/s", "100Gb/s", "1f1b", "0", "1", "-1", "3e-4", "1e999", "9007199254740993", "0.5", "true", "false",
  "@", "=", "é", "\u0000", "\t", "steps", "epochs", "micro_batch", "seq_len", "init", "out", "link", "pcie", "fuse",
];

const fragmentSource = fc.array(fc.constantFrom(...FRAGMENTS), { maxLength: 60 }).map((parts) => parts.join(" "));

type Mutation = { kind: "delete" | "insert" | "duplicate" | "truncate" | "replace"; at: number; length: number; text: string };
const mutation: fc.Arbitrary<Mutation> = fc.record({
  kind: fc.constantFrom("delete", "insert", "duplicate", "truncate", "replace"),
  at: fc.nat(),
  length: fc.nat({ max: 40 }),
  text: fc.oneof(fc.constantFrom(...FRAGMENTS), fc.string({ maxLength: 8 })),
});

function mutate(source: string, m: Mutation): string {
  const at = source.length === 0 ? 0 : m.at % (source.length + 1);
  switch (m.kind) {
    case "delete":
      return source.slice(0, at) + source.slice(at + m.length);
    case "insert":
      return source.slice(0, at) + m.text + source.slice(at);
    case "duplicate":
      return source.slice(0, at + m.length) + source.slice(at, at + m.length) + source.slice(at + m.length);
    case "truncate":
      return source.slice(0, at);
    case "replace":
      return source.slice(0, at) + m.text + source.slice(at + m.length);
  }
}

const mutatedExample = fc
  .tuple(fc.constantFrom(...SOURCES), fc.array(mutation, { minLength: 1, maxLength: 6 }))
  .map(([source, mutations]) => mutations.reduce(mutate, source));

/**
 * Compiles and checks the one promise: diagnostics only, each pointing at real source text.
 * Mutated examples keep their (large) models, so they are planned with one schedule rather
 * than auto's four: the same passes, a quarter of the time.
 */
function checkCompile(source: string, schedule?: "1f1b"): void {
  const result = compile(source, {
    fileName: "fuzz.lf",
    baseDir: EXAMPLES,
    planDir: path.join(EXAMPLES, "..", "out", "fuzz"),
    ...(schedule !== undefined && { schedule }),
  });
  for (const d of result.diagnostics) {
    expect(CODES.has(d.code), `${d.code} is in the catalog`).toBe(true);
    expect(d.message.length).toBeGreaterThan(0);
    expect(d.span, `${d.code} ${d.message} has a span`).toBeDefined();
    const span = d.span!;
    expect(span.start).toBeGreaterThanOrEqual(0);
    expect(span.end).toBeGreaterThanOrEqual(span.start);
    expect(span.end).toBeLessThanOrEqual(source.length);
    expect(positionAt(source, span.start)).toEqual({ line: span.line, col: span.col });
  }
  expect(result.plan !== undefined).toBe(!hasErrors(result.diagnostics));
}

describe("compile never throws", () => {
  it("on random sequences of job-file fragments", () => {
    fc.assert(fc.property(fragmentSource, (source) => checkCompile(source)), { numRuns: 1000 });
  });

  it("on mutated example jobs", () => {
    fc.assert(
      fc.property(mutatedExample, (source) => checkCompile(source, "1f1b")),
      { numRuns: 1000 },
    );
  }, 240_000);

  it("on arbitrary unicode text", () => {
    fc.assert(fc.property(fc.string({ unit: "binary", maxLength: 200 }), (source) => checkCompile(source)), { numRuns: 300 });
  });
});
