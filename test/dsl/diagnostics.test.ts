import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { compile, Diagnostics, formatDiagnostics, readPlan } from "../../compiler/index.js";
import { expectGolden } from "../helpers/golden.js";
import { makeFixture, TINY_MODEL } from "../helpers/fixture.js";

const adapter = (body: string, name = "a") => `adapter ${name} {\n  data "data/a.jsonl"\n  ${body}\n}`;

/** One or more jobs per case; the golden file shows each job and every diagnostic it gets. */
const CASES: { name: string; source: string | string[] }[] = [
  { name: "LF1001-unexpected-character", source: `${TINY_MODEL}\n${adapter("rank 8 @ alpha 16")}` },
  { name: "LF1002-unterminated-string", source: `${TINY_MODEL}\nadapter a {\n  data "data/a.jsonl\n  rank 4\n}` },
  { name: "LF1003-missing-brace", source: `${TINY_MODEL}\nadapter a {\n  data "data/a.jsonl"\n  rank 4\n` },
  { name: "LF1003-stray-brace", source: `${TINY_MODEL}\n}\n${adapter("rank 4")}\n42` },
  { name: "LF1004-unknown-block", source: `${TINY_MODEL}\n${adapter("rank 4")}\nclustr c { gpus 2 }` },
  { name: "LF1005-unknown-property", source: `${TINY_MODEL}\n${adapter("rnak 4  alpah 8  colour blue")}` },
  { name: "LF1006-bad-value", source: `${TINY_MODEL}\n${adapter("rank four  dropout 1e")}\ncluster c { gpu cpu  memory 48  bandwidth 48Gb  net 10GB }` },
  { name: "LF1007-missing-value", source: `${TINY_MODEL}\n${adapter("rank\n  alpha 16\n  targets")}` },
  { name: "LF1008-unknown-choice", source: `model m { arch llama layers 2 hidden 16 heads 4 ffn 32 vocab 64 dtype bf61 }\n${adapter("format alpacca")}\nplan { schedule 1f1d }` },
  { name: "LF1009-duplicate-property", source: `${TINY_MODEL}\n${adapter("rank 4\n  rank 8")}` },
  { name: "LF1010-unexpected-block", source: `${TINY_MODEL}\n${adapter("rank 4 { alpha 8 }\n  { seed 1 }")}` },
  { name: "LF1011-missing-block-name", source: `${TINY_MODEL}\nadapter {\n  data "data/a.jsonl"\n}` },
  { name: "LF2001-duplicate-name", source: `${TINY_MODEL}\n${adapter("out \"o1\"")}\n${adapter("out \"o2\"")}` },
  { name: "LF2002-block-count", source: [`${TINY_MODEL}\n${TINY_MODEL}\ncluster c { gpus 1 }\ncluster d { gpus 1 }`, `${adapter("rank 4")}\nplan { }\nplan { }`] },
  { name: "LF2003-rank-bounds", source: `${TINY_MODEL}\n${adapter("rank 9000", "math")}\n${adapter("rank 0", "b")}` },
  { name: "LF2004-conflicting-properties", source: `${TINY_MODEL}\n${adapter("epochs 3  steps 100")}` },
  { name: "LF2005-missing-property", source: `model m { arch llama layers 2 hidden 16 }\nadapter a { rank 4 }` },
  { name: "LF2006-unknown-target", source: `${TINY_MODEL}\n${adapter("targets q_prj v_proj lm_head toString")}` },
  { name: "LF2007-micro-batch-divides", source: `${TINY_MODEL}\n${adapter("batch 8  micro_batch 3")}` },
  { name: "LF2008-heads-divisible", source: [`model m { layers 2 hidden 16 heads 4 kv_heads 3 ffn 32 vocab 64 }\n${adapter("rank 4")}`, `model n { layers 2 hidden 18 heads 4 ffn 32 vocab 64 }\n${adapter("rank 4")}`] },
  { name: "LF2009-out-of-range", source: `${TINY_MODEL}\n${adapter("dropout 1.5  batch 0  optimizer adamw { lr -1  betas 0.9 1.5 }")}` },
  { name: "LF2010-unknown-device", source: `${TINY_MODEL}\n${adapter("rank 4")}\ncluster c { gpu "a100 80g"  gpus 2 }` },
  { name: "LF2011-too-many-stages", source: `${TINY_MODEL}\n${adapter("rank 4")}\ncluster c { gpu A6000  gpus 4 }\nplan { stages 8 }` },
  { name: "LF2011-stages-over-layers", source: `${TINY_MODEL}\n${adapter("rank 4")}\ncluster c { gpu A6000  gpus 8 }\nplan { stages 5 }` },
  { name: "LF2012-seq-len-too-long", source: `${TINY_MODEL}\n${adapter("seq_len 4096")}` },
  { name: "LF2013-unsupported-arch", source: [`model m { from "models/gpt2" }\n${adapter("rank 4  format tokens")}`, `model n { layers 2 hidden 16 heads 2 head_dim 7 ffn 32 vocab 64 }\n${adapter("rank 4  format tokens")}`] },
  { name: "LF2014-optimizer-property", source: `${TINY_MODEL}\n${adapter("optimizer sgd { lr 0.1  betas 0.9 0.99 }")}\n${adapter("optimizer adamw { momentum 0.9 }  out \"x\"", "b")}` },
  { name: "LF2015-shared-output", source: `${TINY_MODEL}\n${adapter("out \"shared\"")}\n${adapter("out \"./shared/\"", "b")}` },
  { name: "LF2018-fuse-ignored", source: `${TINY_MODEL}\n${adapter("fuse pair")}\n${adapter("fuse pair  out \"b\"", "b")}\nplan { schedule batch }` },
  { name: "LF2017-bad-name", source: `${TINY_MODEL}\nadapter "../escape" { data "data/a.jsonl" }\nadapter "a/b" { data "data/a.jsonl" }\nadapter "ok name-1.2" { data "data/a.jsonl" }` },
  { name: "LF3001-model-folder-missing", source: [`model m { from "models/nope" }\n${adapter("rank 4")}`, `model n { from "models/not-a-folder" }\n${adapter("rank 4")}`] },
  { name: "LF3002-config-unreadable", source: [`model m { from "models/bad-json" }\n${adapter("rank 4")}`, `model n { from "data" }\n${adapter("rank 4")}`] },
  { name: "LF3003-config-invalid", source: `model m { from "models/no-layers" }\n${adapter("rank 4")}` },
  { name: "LF3004-weights-unreadable", source: [`model m { from "models/truncated" }\n${adapter("rank 4  format tokens")}`, `model n { from "models/bad-index" }\n${adapter("rank 4  format tokens")}`] },
  { name: "LF3005-weights-mismatch", source: [`model m { from "models/bad-shape" }\n${adapter("rank 4  format tokens")}`, `model n { from "models/missing-tensor" }\n${adapter("rank 4  format tokens")}`, `model o { from "models/int8" }\n${adapter("rank 4  format tokens")}`] },
  { name: "LF3006-inline-conflicts-config", source: `model m { from "models/tiny"  layers 4  heads 4  tie_embeddings true }\n${adapter("rank 4  format tokens")}` },
  { name: "LF3007-no-weights", source: `model m { from "models/config-only" }\n${adapter("rank 4  format tokens")}` },
  { name: "LF3008-data-missing", source: `${TINY_MODEL}\nadapter a { data "data/nope.jsonl" }\nadapter b { data "data/empty.jsonl" }\nadapter c { data "data" }` },
  { name: "LF3010-no-tokenizer", source: `model m { from "models/tiny" }\n${adapter("rank 4  format chat")}` },
  { name: "LF3011-no-data", source: `${TINY_MODEL}\nadapter planned { rank 4  steps 100 }\nadapter b { rank 4  epochs 2 }` },
  { name: "LF3009-init-invalid", source: `${TINY_MODEL}\n${adapter("rank 8  init \"adapters/r4\"")}\n${adapter("init \"adapters/nope\"", "b")}\n${adapter("init \"adapters/broken\"", "c")}` },
  {
    name: "LF4002-does-not-fit",
    source: `model big { arch llama layers 80 hidden 8192 heads 64 kv_heads 8 ffn 28672 vocab 32000 max_seq 4096 }\n${adapter("seq_len 4096  batch 8  micro_batch 4  steps 10")}\ncluster c { gpu RTX3090  gpus 2 }\nplan { stages 2 }`,
  },
];

/** Cases that need more than a job file: the internal verifier and plan files read back. */
const PLAN_CASES: { name: string; text: string }[] = [
  { name: "LF5001-plan-unreadable", text: '{ "format": "loraflow.plan/1", ' },
  { name: "LF5002-plan-schema", text: JSON.stringify({ format: "loraflow.plan/3", compiler: { name: "loraflow", version: "0.1.0" }, adapters: [] }) },
  { name: "LF5003-plan-version", text: JSON.stringify({ format: "loraflow.plan/9" }) },
];

let fixture: string;
beforeAll(() => {
  fixture = makeFixture();
});
afterAll(() => fs.rmSync(fixture, { recursive: true, force: true }));

function render(source: string): { text: string; codes: string[] } {
  const result = compile(source, { fileName: "job.lf", baseDir: fixture, planDir: path.join(fixture, "out") });
  const printed = formatDiagnostics(result.diagnostics, source).split(fixture).join("<fixture>");
  return { text: `${source}\n----\n${printed}\n`, codes: result.diagnostics.map((d) => d.code) };
}

describe("diagnostics", () => {
  const covered = new Set<string>();

  it.each(CASES)("$name", ({ name, source }) => {
    const rendered = (Array.isArray(source) ? source : [source]).map(render);
    const text = rendered.map((r) => r.text).join("\n====\n\n");
    const codes = rendered.flatMap((r) => r.codes);
    const code = name.slice(0, 6);
    expect(codes, "the case reports the code it is named after").toContain(code);
    codes.forEach((c) => covered.add(c));
    expectGolden(`diagnostics/${name}.txt`, text);
  });

  it.each(PLAN_CASES)("$name", ({ name, text }) => {
    const reading = readPlan(text, "plan.json");
    expect(reading.plan).toBeUndefined();
    reading.diagnostics.forEach((d) => covered.add(d.code));
    expect(reading.diagnostics.map((d) => d.code)).toContain(name.slice(0, 6));
    expectGolden(`diagnostics/${name}.txt`, `${text}\n----\n${formatDiagnostics(reading.diagnostics)}\n`);
  });

  it("every code in the catalog has a golden case", () => {
    // LF4001 is the verifier refusing the compiler's own output: user input cannot reach it,
    // so its case lives in the schedule tests, which corrupt a plan on purpose.
    // LF6xxx are what `run` and `eval` meet in files and in training: test/cli/hardening.test.ts
    // has a case for each.
    const expected = Object.values(Diagnostics).map((d) => d.code).filter((c) => c !== "LF4001" && !c.startsWith("LF6"));
    expect(expected.filter((c) => !covered.has(c))).toEqual([]);
  });

  it("codes are unique and numbered by phase", () => {
    const codes = Object.values(Diagnostics).map((d) => d.code);
    expect(new Set(codes).size).toBe(codes.length);
    for (const code of codes) expect(code).toMatch(/^LF[1-6]\d{3}$/);
  });

  it("the issue's example message reads as specified", () => {
    const source = `${TINY_MODEL.replace("hidden 16 heads 4", "hidden 4096 heads 32").replace("ffn 32", "ffn 11008")}\n${adapter("rank 9000\n  targets q_proj", "math")}`;
    const { text } = render(source);
    expect(text).toContain('job.lf:4:8: error LF2003: adapter "math": rank 9000 exceeds min(in, out) = 4096 of q_proj');
  });
});
