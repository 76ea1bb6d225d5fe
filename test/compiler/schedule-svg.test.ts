import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { compile } from "../../compiler/index.js";
import { adapterColour, MAX_BOXES_PER_STAGE } from "../../compiler/emit/schedule-svg.js";
import { expectGolden } from "../helpers/golden.js";
import { EXAMPLES } from "../helpers/paths.js";

describe("schedule.svg", () => {
  it("the tiny job's picture (golden)", () => {
    const file = path.join(EXAMPLES, "tiny.lf");
    const r = compile(fs.readFileSync(file, "utf8"), { fileName: file });
    expectGolden("plans/tiny.schedule.svg", r.scheduleSvg!);
  });

  it("a fused micro-batch is drawn as a band per adapter", () => {
    const file = path.join(EXAMPLES, "llama2-7b-4xa6000.lf");
    const r = compile(fs.readFileSync(file, "utf8"), { fileName: file });
    expect(r.plan!.schedule.groups).toEqual([
      [0, 1],
      [2, 3],
    ]);
    const fused = r.scheduleSvg!.match(/<g><title>stage 0: F mb0 \(math \+ code\)[^]*?<\/g>/)![0];
    expect(fused.match(/fill="#4e79a7"/g)).toHaveLength(1);
    expect(fused.match(/fill="#f28e2b"/g)).toHaveLength(1);
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
    if (perRound * Math.min(2, phase.rounds) <= 4 * MAX_BOXES_PER_STAGE) {
      expect(boxes).toBe(perRound * Math.min(2, phase.rounds));
      expect(svg).toContain("showing the first rounds");
    } else {
      // Long rounds: the start of the first, up to where one stage has drawn its boxes' worth.
      for (let s = 0; s < 4; s++) {
        const drawn = (svg.match(new RegExp(`<title>stage ${s}: [FB] mb`, "g")) ?? []).length;
        expect(drawn).toBeLessThanOrEqual(MAX_BOXES_PER_STAGE + 4);
        expect(drawn).toBeGreaterThan(MAX_BOXES_PER_STAGE / 2);
      }
      expect(svg).toMatch(/showing the first [\d.]+ \w+ of the first round/);
    }
    // Every element opened is closed: <rect .../> or <rect>...</rect>, <text>...</text>.
    expect((svg.match(/<text/g) ?? []).length).toBe((svg.match(/<\/text>/g) ?? []).length);
  });
});

describe("adapter colours", () => {
  it("stay distinct for a hundred adapters", () => {
    const colours = Array.from({ length: 100 }, (_, i) => adapterColour(i));
    expect(new Set(colours).size).toBe(100);
    for (const c of colours) expect(c).toMatch(/^#[0-9a-f]{6}$/);
    expect(colours.slice(0, 2)).toEqual(["#4e79a7", "#f28e2b"]);
  });
});
