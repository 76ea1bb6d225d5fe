import { describe, expect, it } from "vitest";
import { compile } from "../../compiler/index.js";

const job = (layers: number, stages: number, gpus: number) => `
model m { layers ${layers} hidden 16 heads 4 ffn 32 vocab 64 }
adapter a { data "data/math.jsonl" steps 1 }
cluster c { gpu A6000 gpus ${gpus} }
plan { stages ${stages} }`;

describe("even partition", () => {
  it.each([
    { layers: 32, stages: 4, expected: [[0, 8], [8, 16], [16, 24], [24, 32]] },
    { layers: 10, stages: 4, expected: [[0, 3], [3, 6], [6, 8], [8, 10]] },
    { layers: 5, stages: 5, expected: [[0, 1], [1, 2], [2, 3], [3, 4], [4, 5]] },
    { layers: 7, stages: 1, expected: [[0, 7]] },
    { layers: 80, stages: 3, expected: [[0, 27], [27, 54], [54, 80]] },
  ])("$layers layers over $stages stages", ({ layers, stages, expected }) => {
    const result = compile(job(layers, stages, 8), { baseDir: "examples" });
    expect(result.diagnostics).toEqual([]);
    expect(result.plan!.stages.map((s) => s.layers)).toEqual(expected);
    expect(result.plan!.stages.map((s) => s.blocks)).toEqual(expected.map(([a, b]) => [2 * a!, 2 * b!]));
  });

  it("stages auto takes one stage per device, at most one per layer", () => {
    expect(compile(job(32, 1, 8).replace("stages 1", "stages auto"), { baseDir: "examples" }).plan!.stages).toHaveLength(8);
    expect(compile(job(3, 1, 8).replace("stages 1", "stages auto"), { baseDir: "examples" }).plan!.stages).toHaveLength(3);
  });

  it("the --stages override beats the plan block", () => {
    expect(compile(job(32, 1, 8), { baseDir: "examples", stages: 2 }).plan!.stages).toHaveLength(2);
  });

  it("devices count across nodes, and stages know their node", () => {
    const result = compile(job(8, 4, 2).replace("gpus 2", "gpus 2 nodes 2"), { baseDir: "examples" });
    expect(result.plan!.stages.map((s) => [s.device, s.node])).toEqual([
      [0, 0],
      [1, 0],
      [2, 1],
      [3, 1],
    ]);
  });
});
