import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { compile, planMemory } from "../../compiler/index.js";
import { EXAMPLES } from "../helpers/paths.js";

const source = (name: string) => fs.readFileSync(path.join(EXAMPLES, name), "utf8");

describe("report.html", () => {
  it("is one self-contained page: figures, a memory bar per stage, the picture, stages, adapters, the comparison", () => {
    const file = path.join(EXAMPLES, "llama2-7b-4xa6000.lf");
    const r = compile(source("llama2-7b-4xa6000.lf"), { fileName: file, compare: true });
    const html = r.reportHtml!;
    expect(html.startsWith("<!doctype html>")).toBe(true);
    expect(html).not.toMatch(/<script|<link|src=|href=|@import|url\(/i);
    expect(html).toContain(r.scheduleSvg!.slice(0, 200));
    expect((html.match(/<div class="bar">/g) ?? []).length).toBe(4);
    for (const heading of ["Memory per stage", "Schedule", "Stages", "Adapters", "Phases", "Schedules weighed"]) expect(html).toContain(`<h2>${heading}</h2>`);
    // Every schedule weighed is a row, the chosen one marked.
    for (const row of r.summary!.comparison!) expect(html).toContain(`<td>${row.chosen ? "* " : ""}${row.label}</td>`);
    expect((html.match(/<tr class="chosen">/g) ?? []).length).toBe(1);
    // The memory bars say each stage's peak of its capacity.
    const memory = planMemory(r.plan!);
    const capacity = r.plan!.cluster.device.memoryBytes;
    memory.forEach((m) => expect(html).toContain(`of 48.0 GB (${((m.totalBytes / capacity) * 100).toFixed(1)}%)`));
  });

  it("a named schedule compiled without compare (the library's default) says what was not weighed", () => {
    const r = compile(source("tiny.lf"), { baseDir: EXAMPLES });
    expect(r.reportHtml!).toContain("this plan was compiled without <code>compare</code>. <code>loraflow compile</code> weighs them all.");
  });
});
