import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { compile, formatDiagnostics, formatPlanJson, readPlan, SummarySchema } from "../../compiler/index.js";
import { expectGolden } from "../helpers/golden.js";
import { EXAMPLE_JOBS, EXAMPLES, ROOT } from "../helpers/paths.js";

function compileExample(name: string) {
  const file = path.join(EXAMPLES, name);
  const source = fs.readFileSync(file, "utf8");
  const result = compile(source, { fileName: file, planDir: path.join(ROOT, "out", name.replace(/\.lf$/, "")) });
  return { source, result };
}

describe("examples", () => {
  it("the folder holds exactly the examples these tests know", () => {
    expect(fs.readdirSync(EXAMPLES).filter((f) => f.endsWith(".lf")).sort()).toEqual([...EXAMPLE_JOBS].sort());
  });

  it.each(EXAMPLE_JOBS)("%s compiles without diagnostics, and its plan reads back equal", (name) => {
    const { source, result } = compileExample(name);
    expect(formatDiagnostics(result.diagnostics, source)).toBe("");
    const text = JSON.stringify(result.plan);
    const reading = readPlan(text);
    expect(reading.diagnostics).toEqual([]);
    expect(reading.plan).toEqual(result.plan);
    expect(SummarySchema.parse(JSON.parse(JSON.stringify(result.summary)))).toEqual(result.summary);
  });

  it("the tiny plan (golden, reviewed as a diff when the format changes)", () => {
    const { result } = compileExample("tiny.lf");
    // The programs themselves have their own golden, in their text form (test/compiler/programs.test.ts).
    const { sets, ...programs } = result.plan!.programs;
    const plan = { ...result.plan!, programs: { ...programs, sets: `${sets.length} program sets of ${sets[0]!.length} programs` } };
    expectGolden("plans/tiny.plan.json", formatPlanJson(plan));
    const { compileMillis: _, ...summary } = result.summary!;
    expectGolden("plans/tiny.summary.json", JSON.stringify(summary, null, 2));
  });

  it("the mLoRA setting: 4 balanced stages on 4 A6000s, 4 micro-batches per step", () => {
    const { result } = compileExample("llama2-7b-4xa6000.lf");
    const summary = result.summary!;
    expect(summary.stages).toHaveLength(4);
    expect(summary.stages[0]!.layers[0]).toBe(0);
    expect(summary.stages[3]!.layers[1]).toBe(32);
    expect(summary.stages.map((s) => [s.embedding, s.head])).toEqual([
      [true, false],
      [false, false],
      [false, false],
      [false, true],
    ]);
    expect(summary.imbalance).toBeLessThan(0.05);
    expect(summary.adapters).toEqual(["math", "code", "chat", "summarize"].map((name) => ({ name, steps: 1000, microBatchesPerStep: 4 })));
    // `auto` picks the flush-free interleaving: the paper's setting, idle at most 0.08.
    expect(summary.schedule).toBe("mlora");
    expect(summary.idleFraction).toBeLessThan(0.08);
  });

  it("Llama-3-8B: GQA shapes, epochs turned into steps, mixed ranks", () => {
    const { result } = compileExample("llama3-8b-4xh100.lf");
    const plan = result.plan!;
    expect(plan.model.config).toMatchObject({ kvHeads: 8, headDim: 128, vocab: 128256 });
    expect(plan.model.parameters).toBe(8_030_261_248);
    const sum = plan.adapters.find((a) => a.name === "sum_r16")!;
    // 32 examples, 3 epochs, batch 8.
    expect(sum.steps).toBe(12);
    expect(plan.adapters.map((a) => a.rank)).toEqual([8, 64, 16, 32, 16, 4, 16, 128]);
    expect(plan.adapters.find((a) => a.name === "math_r64")!.scaling).toBeCloseTo(128 / 8);
  });

  it("Llama-2-7B has the published parameter count", () => {
    expect(compileExample("llama2-7b-4xa6000.lf").result.plan!.model.parameters).toBe(6_738_415_616);
  });
});
