import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { compile, readPlan } from "../../compiler/index.js";
import { EXAMPLES, EXAMPLE_JOBS } from "../helpers/paths.js";

const compileAuto = (name: string, compare = false) => {
  const file = path.join(EXAMPLES, name);
  const source = fs.readFileSync(file, "utf8").replace(/(plan \{[^}]*?)schedule \w+/, "$1schedule auto");
  return compile(source, { fileName: file, compare });
};

describe("auto weighs whole schedules, fused interleavings and orders", () => {
  it.each(EXAMPLE_JOBS)("%s: the choice is the shortest fitting makespan weighed, and the summary says so", (name) => {
    const { summary, plan } = compileAuto(name, true);
    const rows = summary!.comparison!;
    expect(rows.map((r) => r.label).slice(0, 4)).toEqual(["mlora", "batch", "1f1b", "gpipe"]);
    const chosen = rows.filter((r) => r.chosen);
    expect(chosen).toHaveLength(1);
    const simulated = rows.filter((r) => r.fits && r.makespanSeconds !== null).map((r) => r.makespanSeconds!);
    expect(chosen[0]!.makespanSeconds).toBe(Math.min(...simulated));
    expect(summary!.makespanSeconds).toBeCloseTo(chosen[0]!.makespanSeconds!, 9);
    expect(rows.some((r) => r.pruned)).toBe(false);
    // The plan says how it fused, and reads back.
    if (chosen[0]!.label.includes("fused")) expect(plan!.schedule.groups!.flat().sort()).toEqual(plan!.adapters.map((_, i) => i));
    expect(readPlan(JSON.stringify(plan)).diagnostics).toEqual([]);
  });

  it("without compare, auto prunes but chooses the same schedule", () => {
    for (const name of EXAMPLE_JOBS) {
      const full = compileAuto(name, true).summary!;
      const quick = compileAuto(name).summary!;
      expect(quick.makespanSeconds, name).toBe(full.makespanSeconds);
      expect(quick.groups, name).toEqual(full.groups);
    }
  });

  it("Llama-2-7B on 4 x A6000: fusing pairs of adapters beats interleaving them one by one", () => {
    const { summary } = compileAuto("llama2-7b-4xa6000.lf");
    const row = (label: string) => summary!.comparison!.find((r) => r.label === label)!;
    expect(summary!.groups).toEqual([
      ["math", "code"],
      ["chat", "summarize"],
    ]);
    expect(row("mlora fused math+code chat+summarize").makespanSeconds!).toBeLessThan(row("mlora").makespanSeconds!);
    expect(summary!.idleFraction).toBeLessThan(0.08);
  });

  it("short micro-batches on H100s: auto fuses groups and beats every whole schedule", () => {
    const { summary } = compileAuto("llama3-8b-short-4xh100.lf", true);
    const row = (label: string) => summary!.comparison!.find((r) => r.label === label)!.makespanSeconds!;
    expect(summary!.groups!.length).toBeGreaterThan(1);
    expect(summary!.groups!.every((g) => g.length > 1)).toBe(true);
    expect(row("mlora") / summary!.makespanSeconds).toBeGreaterThan(1.5);
    expect(row("batch") / summary!.makespanSeconds).toBeGreaterThan(1.1);
  });

  it.each(["mlora", "auto"])("`fuse` in the job: %s keeps the declared groups, in declaration order", (schedule) => {
    const file = path.join(EXAMPLES, "llama2-7b-4xa6000.lf");
    // math with chat, code alone, summarize with math's group: groups form in declaration order.
    const source = fs
      .readFileSync(file, "utf8")
      .replace(/(plan \{[^}]*?)schedule \w+/, `$1schedule ${schedule}`)
      .replace("adapter math {", "adapter math { fuse left")
      .replace("adapter chat {", "adapter chat { fuse left")
      .replace("adapter summarize {", "adapter summarize { fuse right");
    const r = compile(source, { fileName: file, compare: true });
    expect(r.diagnostics).toEqual([]);
    const labels = r.summary!.comparison!.map((c) => c.label);
    expect(labels).toContain("mlora fused math+chat code summarize");
    expect(labels.filter((l) => l.startsWith("mlora"))).toHaveLength(1);
    if (schedule === "mlora") {
      expect(r.plan!.schedule.groups).toEqual([[0, 2], [1], [3]]);
      expect(r.summary!.groups).toEqual([["math", "chat"], ["code"], ["summarize"]]);
    }
    expect(readPlan(JSON.stringify(r.plan)).diagnostics).toEqual([]);
  });

  it.each([
    { groups: [[0, 1], [2]], message: /name each of the 4 adapters exactly once/ },
    { groups: [[0, 2], [1, 3]], message: /mb0 fuses adapters of different schedule.groups/ },
  ])("a plan whose groups disagree with it is refused: $groups", ({ groups, message }) => {
    const { plan } = compileAuto("llama2-7b-4xa6000.lf");
    expect(plan!.schedule.groups).toEqual([
      [0, 1],
      [2, 3],
    ]);
    plan!.schedule.groups = groups;
    expect(readPlan(JSON.stringify(plan)).diagnostics[0]!.message).toMatch(message);
  });
});
