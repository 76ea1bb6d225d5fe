import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { parseJob, parseQuantity, type BodyAst, type JobAst } from "../../dsl/index.js";
import { jobLexer } from "../../dsl/tokens.js";
import { expectGolden } from "../helpers/golden.js";
import { EXAMPLE_JOBS, EXAMPLES } from "../helpers/paths.js";

function printBody(body: BodyAst, indent: string): string[] {
  return body.properties.flatMap((p) => {
    const values = p.values.map((v) => ("value" in v ? JSON.stringify(v.value) : v.kind)).join(" ");
    const head = `${indent}${p.key}${values ? " " + values : ""}  @${p.keySpan.line}:${p.keySpan.col}`;
    return p.block ? [head + " {", ...printBody(p.block, indent + "  "), `${indent}}`] : [head];
  });
}

/** The AST as text: blocks, properties, typed values and positions. */
function printAst(ast: JobAst): string {
  return ast.blocks
    .flatMap((b) => [`${b.kind}${b.name ? ` ${JSON.stringify(b.name.text)}` : ""}  @${b.kindSpan.line}:${b.kindSpan.col}`, ...printBody(b.body, "  ")])
    .join("\n");
}

describe("lexer", () => {
  it.each([
    ["48GB 768GB/s 100Gb/s 1.5TiB", ["Quantity:48GB", "Quantity:768GB/s", "Quantity:100Gb/s", "Quantity:1.5TiB"]],
    ["1f1b 3e-4 -5 0.05 .5", ["Word:1f1b", "NumberLiteral:3e-4", "NumberLiteral:-5", "NumberLiteral:0.05", "NumberLiteral:.5"]],
    ["A100-80G llama2_7b q_proj", ["Word:A100-80G", "Word:llama2_7b", "Word:q_proj"]],
    ['"a b" "esc\\"aped"', ['ClosedString:"a b"', 'ClosedString:"esc\\"aped"']],
    ["x # comment\ny // another\nz", ["Word:x", "Word:y", "Word:z"]],
    ["1GBx 48 GB", ["Word:1GBx", "NumberLiteral:48", "Word:GB"]],
    ["{}", ["LCurly:{", "RCurly:}"]],
  ])("%s", (text, expected) => {
    const { tokens, errors } = jobLexer.tokenize(text);
    expect(errors).toEqual([]);
    expect(tokens.map((t) => `${t.tokenType.name}:${t.image}`)).toEqual(expected);
  });
});

describe("units", () => {
  it.each([
    ["48GB", 48e9, false],
    ["24GiB", 24 * 2 ** 30, false],
    ["768GB/s", 768e9, true],
    ["100Gb/s", 12.5e9, true],
    ["512B", 512, false],
    ["8Kb/s", 1000, true],
  ] as const)("%s", (text, value, perSecond) => {
    const q = parseQuantity(text);
    expect(q.value).toBeCloseTo(value);
    expect(q.perSecond).toBe(perSecond);
  });
});

describe("parser", () => {
  it.each(EXAMPLE_JOBS)("AST of %s (golden)", (name) => {
    const source = fs.readFileSync(path.join(EXAMPLES, name), "utf8");
    const { ast, diagnostics } = parseJob(source, name);
    expect(diagnostics).toEqual([]);
    expectGolden(`ast/${name.replace(/\.lf$/, "")}.txt`, printAst(ast));
  });

  it("values that are also property names elsewhere stay values (`schedule batch`)", () => {
    const { ast, diagnostics } = parseJob("plan { schedule batch stages 2 }");
    expect(diagnostics).toEqual([]);
    expect(ast.blocks[0]!.body.properties.map((p) => [p.key, p.values.map((v) => ("value" in v ? v.value : v.kind))])).toEqual([
      ["schedule", ["batch"]],
      ["stages", [2]],
    ]);
  });

  it("properties may share a line or span several; block names may be strings", () => {
    const { ast, diagnostics } = parseJob('adapter "my adapter" { rank\n 8 targets q_proj\n v_proj alpha 16 }');
    expect(diagnostics).toEqual([]);
    expect(ast.blocks[0]!.name!.text).toBe("my adapter");
    expect(ast.blocks[0]!.body.properties.map((p) => p.key)).toEqual(["rank", "targets", "alpha"]);
  });

  it("reports every error of a file in one run", () => {
    const { diagnostics } = parseJob("modle m { }\nadapter a { rnak 4 }\nplan { schedule fast }\n}");
    expect(diagnostics.map((d) => d.code)).toEqual(["LF1004", "LF1005", "LF1008", "LF1003"]);
  });
});

describe("line endings", () => {
  it("CRLF and lone CR files report the same positions as LF ones", () => {
    const lf = "model m {\n  rnak 4\n}";
    for (const text of [lf, lf.replace(/\n/g, "\r\n"), "\r0 model m {\n  rnak 4\n}"]) {
      const { diagnostics } = parseJob(text);
      const d = diagnostics.find((x) => x.code === "LF1005")!;
      expect(d.span!.line).toBe(2);
      expect(text.slice(d.span!.start, d.span!.end)).toBe("rnak");
    }
  });
});
