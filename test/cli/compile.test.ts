import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SummarySchema } from "../../compiler/index.js";
import { tempDir } from "../helpers/hf-model.js";
import { ROOT } from "../helpers/paths.js";

const BIN = path.join(ROOT, "bin", "loraflow.js");
let work: string;

function loraflow(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd: work, encoding: "utf8" });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(() => {
  work = tempDir("loraflow-cli-");
  fs.cpSync(path.join(ROOT, "examples"), path.join(work, "examples"), { recursive: true });
});
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

describe("loraflow compile", () => {
  it("writes plan.json, summary.json, schedule.svg, trace.json and report.html to out/<job name> and prints what it planned", () => {
    const r = loraflow("compile", "examples/tiny.lf");
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/schedule 1f1b over 2 stages/);
    expect(r.stdout).toMatch(/wrote out\/tiny\/plan\.json, plan\.ts, summary\.json, schedule\.svg, trace\.json and report\.html/);
    expect(r.stdout).toMatch(/simulated: makespan .* \(bound .*\), idle 0\.\d{3}, imbalance 0\.\d{3}, \d+ tokens\/s/);
    for (const f of ["plan.ts", "schedule.svg", "trace.json", "report.html"]) expect(fs.existsSync(path.join(work, "out/tiny", f)), f).toBe(true);
    expect(JSON.parse(fs.readFileSync(path.join(work, "out/tiny/trace.json"), "utf8")).traceEvents.length).toBeGreaterThan(0);
    // The report compares every schedule even for a named one; the table is printed only on --compare.
    expect(fs.readFileSync(path.join(work, "out/tiny/report.html"), "utf8")).toMatch(/<tr class="chosen"><td>\* 1f1b<\/td>/);
    expect(r.stdout).not.toMatch(/schedules weighed/);
    // tiny.lf asks for 1f1b; the summary says what would be faster.
    expect(r.stdout).toMatch(/weighed 5 schedules \(--compare lists them\); the fastest other, \S+, would take 0\.\d\dx the time \(`schedule auto` picks the fastest\)/);
    const plan = JSON.parse(fs.readFileSync(path.join(work, "out/tiny/plan.json"), "utf8"));
    expect(plan.format).toBe("loraflow.plan/3");
    // Data outside the plan's folder is reached through a link the compile made inside it.
    expect(plan.adapters[0].data.path).toBe("inputs/count/count.jsonl");
    expect(fs.readlinkSync(path.join(work, "out/tiny/inputs/count/count.jsonl"))).toBe("../../../../examples/data/count.jsonl");
    expect(plan.adapters[0].out).toBe("adapters/count");
    SummarySchema.parse(JSON.parse(fs.readFileSync(path.join(work, "out/tiny/summary.json"), "utf8")));
  });

  it("--json prints the summary; -o, --schedule and --stages are honoured", () => {
    const r = loraflow("compile", "examples/llama2-7b-4xa6000.lf", "-o", "plans/b", "--schedule", "batch", "--stages", "2", "--json");
    expect(r.code).toBe(0);
    const summary = SummarySchema.parse(JSON.parse(r.stdout));
    expect(summary.schedule).toBe("batch");
    expect(summary.stages).toHaveLength(2);
    expect(fs.existsSync(path.join(work, "plans/b/plan.json"))).toBe(true);
  });

  it("--compare prints every schedule weighed, the chosen one starred", () => {
    const r = loraflow("compile", "examples/llama2-7b-4xa6000.lf", "-o", "plans/cmp", "--compare");
    expect(r.code).toBe(0);
    const table = r.stdout.slice(0, r.stdout.indexOf("model "));
    expect(table).toMatch(/^schedules weighed \(\* chosen\):\n {4}schedule +makespan +idle +peak memory +fits/);
    for (const name of ["mlora", "batch", "1f1b", "gpipe", "mlora fused math\\+code chat\\+summarize"]) expect(table).toMatch(new RegExp(`\\n {2}[ *] ${name} +\\d+ s +0\\.\\d{3} +[\\d.]+ GB +yes`));
    expect(table.match(/\n {2}\* /g)).toHaveLength(1);
    expect(fs.readFileSync(path.join(work, "plans/cmp/report.html"), "utf8")).toContain("<h2>Schedules weighed</h2>");
  });

  it("--compare marks the schedules that would not fit", () => {
    // 12 GB devices: a fused batch stashes all four adapters' activations and does not fit.
    fs.writeFileSync(path.join(work, "examples/small.lf"), fs.readFileSync(path.join(work, "examples/llama2-7b-4xa6000.lf"), "utf8").replace("memory 48GB", "memory 12GB"));
    const r = loraflow("compile", "examples/small.lf", "-o", "plans/small", "--schedule", "mlora", "--stages", "4", "--compare");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/\n {4}batch +- +- +[\d.]+ GB +no +exceeds device memory/);
    expect(r.stdout).toMatch(/\n {2}\* mlora +\d+ s +0\.\d{3} +[\d.]+ GB +yes/);
  });

  it("a failing compile prints diagnostics, exits 1 and leaves the folder as it was", () => {
    fs.mkdirSync(path.join(work, "out/broken"), { recursive: true });
    fs.writeFileSync(path.join(work, "out/broken/plan.json"), "earlier plan");
    fs.writeFileSync(path.join(work, "examples/broken.lf"), fs.readFileSync(path.join(work, "examples/tiny.lf"), "utf8").replace("rank 8", "rank 9000"));
    const r = loraflow("compile", "examples/broken.lf");
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^examples\/broken\.lf:9:8: error LF2003: adapter "count": rank 9000 exceeds min\(in, out\) = 32 of v_proj/m);
    expect(r.stderr).toMatch(/1 error; nothing written/);
    expect(fs.readFileSync(path.join(work, "out/broken/plan.json"), "utf8")).toBe("earlier plan");
    expect(fs.readdirSync(path.join(work, "out/broken"))).toEqual(["plan.json"]);
  });

  it("--dump-ir prints the IR after a pass", () => {
    const r = loraflow("compile", "examples/tiny.lf", "-o", "plans/dump", "--dump-ir", "partition");
    expect(r.code).toBe(0);
    const ir = JSON.parse(r.stdout);
    expect(ir.stages).toHaveLength(2);
    expect(ir.graph.nodes.length).toBeGreaterThan(0);
    expect(ir.schedule).toBeUndefined();
  });

  it.each([
    { args: ["compile", "examples/nope.lf"], pattern: /cannot read examples\/nope\.lf: ENOENT/ },
    { args: ["compile", "examples/tiny.lf", "--schedule", "fastest"], pattern: /Allowed choices are gpipe, 1f1b, batch, mlora, auto/ },
    { args: ["compile", "examples/tiny.lf", "--stages", "0"], pattern: /expected a whole number >= 1 or auto/ },
    { args: ["compiel", "examples/tiny.lf"], pattern: /Did you mean compile\?/ },
  ])("refuses $args with a clear message", ({ args, pattern }) => {
    const r = loraflow(...args);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(pattern);
  });
});
