import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { tempDir } from "../helpers/hf-model.js";
import { copyFolder, counts, expectComplete, killAt, loraflow, withStrace } from "../helpers/kill.js";
import { writeTokenData } from "../helpers/train-job.js";

/**
 * SIGKILL at every rename, exchange, unlink and rmdir of `loraflow compile` into a folder an
 * earlier compile and run wrote: the folder holds one compile's files, the old or the new,
 * never a mix, and the adapter the earlier run wrote inside it stays complete.
 */
const JOB = `model tiny { arch llama layers 2 hidden 16 heads 4 kv_heads 2 ffn 32 vocab 64 max_seq 64 dtype fp32 }
adapter a { data "data.jsonl" format tokens seq_len 16 batch 2 micro_batch 1 steps 4 save_every 1 }
`;
const FILES = ["plan.json", "plan.ts", "report.html", "schedule.svg", "summary.json", "trace.json"];

let base: string;
const scratch: string[] = [];
beforeAll(() => {
  base = tempDir("loraflow-kill-compile-");
  writeTokenData(path.join(base, "data.jsonl"), 12, 64, 9);
  fs.writeFileSync(path.join(base, "job.lf"), JOB);
  expect(loraflow(base, ["run", "job.lf", "--max-steps", "2"]).status).toBe(0);
});
afterAll(() => [base, ...scratch].forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

// Two compiles of one job differ only in how long they took.
const read = (dir: string) => Object.fromEntries(FILES.map((f) => [f, fs.readFileSync(path.join(dir, "out/job", f), "utf8").replace(/"compileMillis": [\d.]+/, "")]));
const edited = (dir: string) => fs.writeFileSync(path.join(dir, "job.lf"), JOB.replace("steps 4", "steps 5"));

withStrace("a compile killed at any file-system change", () => {
  it("leaves its folder holding one compile's files, the old or the new", () => {
    const old = read(base);
    const probe = copyFolder(base, scratch);
    edited(probe);
    const calls = counts(probe, ["compile", "job.lf"]);
    // The mkdirs only build the staging folder; the commit points are the others.
    calls.delete("mkdir");
    const fresh = read(probe);
    expect(fresh["plan.json"]).not.toBe(old["plan.json"]);
    for (const [syscall, n] of calls) {
      for (let k = 1; k <= n; k++) {
        const dir = copyFolder(base, scratch);
        edited(dir);
        loraflow(dir, ["compile", "job.lf"], killAt(syscall, k));
        expect([old, fresh], `killed at ${syscall} #${k}`).toContainEqual(read(dir));
        expectComplete(path.join(dir, "out/job/adapters/a"), 8);
        fs.rmSync(dir, { recursive: true, force: true });
      }
    }
  }, 600_000);
});
