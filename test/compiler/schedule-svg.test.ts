import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { compile } from "../../compiler/index.js";
import { expectGolden } from "../helpers/golden.js";
import { EXAMPLES } from "../helpers/paths.js";

describe("schedule.svg", () => {
  it("the tiny job's picture (golden)", () => {
    const file = path.join(EXAMPLES, "tiny.lf");
    const r = compile(fs.readFileSync(file, "utf8"), { fileName: file });
    expectGolden("plans/tiny.schedule.svg", r.scheduleSvg!);
  });

  it.each(["1f1b", "mlora"])("draws every simulated action of the first rounds, a row per stage, and a legend (%s)", (schedule) => {
    const file = path.join(EXAMPLES, "llama2-7b-4xa6000.lf");
    const r = compile(fs.readFileSync(file, "utf8"), { fileName: file, schedule: schedule as "1f1b" });
    const svg = r.scheduleSvg!;
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg.trimEnd().endsWith("</svg>")).toBe(true);
    expect((svg.match(/<text[^>]*>stage \d<\/text>/g) ?? []).length).toBe(4);
    for (const name of ["math", "code", "chat", "summarize", "forward", "backward", "optimizer step"]) expect(svg).toContain(`>${name}</text>`);
    const boxes = (svg.match(/<title>stage \d: [FB] mb\d+/g) ?? []).length;
    const phase = r.plan!.schedule.phases[0]!;
    const perRound = phase.microBatches.length * 2 * 4;
    expect(boxes).toBe(perRound * Math.min(2, phase.rounds));
    // Every element opened is closed: <rect .../> or <rect>...</rect>, <text>...</text>.
    expect((svg.match(/<text/g) ?? []).length).toBe((svg.match(/<\/text>/g) ?? []).length);
  });
});
