import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, expect, it } from "vitest";
import { tempDir } from "../helpers/hf-model.js";
import { ROOT } from "../helpers/paths.js";
import { writeTokenData } from "../helpers/train-job.js";

/**
 * Plans from someone else: fast-check picks fields of a compiled plan (counts, indices, paths,
 * sizes) and gives them hostile values; `loraflow run` on each must end in a coded error or a
 * clean run, never a signal, a hang, a stack trace, or a write outside the plan's folder.
 */
let root: string;
let pristine: string;
beforeAll(() => {
  root = tempDir("loraflow-hostile-");
  const job = path.join(root, "job");
  fs.mkdirSync(job);
  writeTokenData(path.join(job, "data.jsonl"), 10, 64, 3);
  fs.writeFileSync(
    path.join(job, "job.lf"),
    `model tiny { arch llama layers 2 hidden 16 heads 4 kv_heads 2 ffn 32 vocab 64 max_seq 64 dtype fp32 }
adapter a { data "data.jsonl" format tokens seq_len 16 batch 2 micro_batch 1 steps 2 }
adapter b { data "data.jsonl" format tokens seq_len 8 batch 2 micro_batch 2 steps 1 targets all }
cluster c { gpu cpu gpus 2 }
plan { schedule mlora stages 2 }
`,
  );
  const r = spawnSync(process.execPath, [path.join(ROOT, "bin", "loraflow.js"), "compile", "job.lf", "-o", "plan"], { cwd: job, encoding: "utf8" });
  expect(r.status, r.stderr).toBe(0);
  pristine = fs.readFileSync(path.join(job, "plan/plan.json"), "utf8");
  fs.mkdirSync(path.join(root, "outside"));
  fs.writeFileSync(path.join(root, "outside/keep.txt"), "not loraflow's");
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/** Every file below `dir`, for the check that nothing outside the plan's folder changed. */
function listing(dir: string, skip: string): string[] {
  return fs
    .readdirSync(dir, { recursive: true, withFileTypes: true })
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
    .filter((p) => !p.startsWith(skip))
    .sort();
}

const numbers = fc.oneof(
  fc.constantFrom(-1, 0, 1, 2, 3, 7, 2 ** 31, 2 ** 53, 3e7, -100, 0.5, Number.MAX_SAFE_INTEGER, 1e308),
  fc.integer({ min: -5, max: 70 }),
);
const strings = fc.constantFrom("/etc/passwd", "../outside", "../../outside/keep.txt", ".", "..", "a/../../x", "", "data.jsonl", "plan.json", "inputs/a", "x\u001b[2J", "C:\\x", "outputs/../..");

/** Paths into the plan that a hostile author would change, with what they would put there. */
function edits(plan: any): fc.Arbitrary<[string[], unknown]> {
  const paths: [string[], fc.Arbitrary<unknown>][] = [];
  const walk = (v: unknown, at: string[]) => {
    if (Array.isArray(v)) v.forEach((x, i) => walk(x, [...at, String(i)]));
    else if (v && typeof v === "object") for (const [k, x] of Object.entries(v)) walk(x, [...at, k]);
    else if (typeof v === "number") paths.push([at, numbers]);
    else if (typeof v === "string" && !/^(F|B|SEND|RECV|STEP) /.test(v)) paths.push([at, strings]);
    else if (typeof v === "string") paths.push([at, fc.constantFrom("F mb9", "B mb-1", "SEND act mb0 to s5", "RECV grad mb0 from s0", "STEP a9", "STEP a1", "F mb0")]);
  };
  walk(plan, []);
  return fc.integer({ min: 0, max: paths.length - 1 }).chain((i) => paths[i]![1].map((value) => [paths[i]![0], value] as [string[], unknown]));
}

it("every hostile plan ends in a coded error or a clean run, never a signal, hang or stack, nor a write outside its folder", () => {
  const plan = JSON.parse(pristine);
  const before = listing(root, path.join("job", "plan"));
  fc.assert(
    fc.property(fc.array(edits(plan), { minLength: 1, maxLength: 3 }), (changes) => {
      const edited = JSON.parse(pristine);
      for (const [at, value] of changes) {
        let o = edited;
        for (const k of at.slice(0, -1)) o = o[k];
        o[at[at.length - 1]!] = value;
      }
      const dir = path.join(root, "job", "plan");
      fs.writeFileSync(path.join(dir, "plan.json"), JSON.stringify(edited));
      const r = spawnSync(process.execPath, [path.join(ROOT, "bin", "loraflow.js"), "run", "plan"], { cwd: path.join(root, "job"), encoding: "utf8", timeout: 60_000 });
      const what = `${JSON.stringify(changes)}\n${r.stderr}`;
      expect(r.signal, what).toBeNull();
      expect([0, 1], what).toContain(r.status);
      if (r.status === 1) expect(r.stderr, what).toMatch(/error LF\d{4}: /);
      expect(r.stderr, what).not.toMatch(/\n\s+at .*:\d+:\d+|internal error/);
      expect(listing(root, path.join("job", "plan")), what).toEqual(before);
      expect(fs.readFileSync(path.join(root, "outside/keep.txt"), "utf8")).toBe("not loraflow's");
    }),
    { numRuns: 40, seed: 20261201 },
  );
}, 300_000);
