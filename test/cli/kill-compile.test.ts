import * as fs from "node:fs";
import * as path from "node:path";
import { expect, it } from "vitest";
import { counts, expectComplete, KILL_JOB, killAt, killWorkspace, loraflow, withStrace } from "../helpers/kill.js";

/**
 * SIGKILL at every rename, exchange, unlink and rmdir of `loraflow compile` into a folder an
 * earlier compile and run wrote: the folder holds one compile's files, the old or the new,
 * never a mix, and the adapter the earlier run wrote inside it stays complete.
 */
const FILES = ["plan.json", "plan.ts", "report.html", "schedule.svg", "summary.json", "trace.json"];

const workspace = killWorkspace("loraflow-kill-compile-");

// Two compiles of one job differ only in how long they took.
const read = (dir: string) => Object.fromEntries(FILES.map((f) => [f, fs.readFileSync(path.join(dir, "out/job", f), "utf8").replace(/"compileMillis": [\d.]+/, "")]));
const edited = (dir: string) => fs.writeFileSync(path.join(dir, "job.lf"), KILL_JOB.replace("steps 3", "steps 4"));

withStrace("a compile killed at any file-system change", () => {
  it("leaves its folder holding one compile's files, the old or the new", () => {
    const old = read(workspace.base());
    const probe = workspace.copy();
    edited(probe);
    const calls = counts(probe, ["compile", "job.lf"]);
    // The mkdirs only build the staging folder; the commit points are the others.
    calls.delete("mkdir");
    const fresh = read(probe);
    expect(fresh["plan.json"]).not.toBe(old["plan.json"]);
    for (const [syscall, n] of calls) {
      for (let k = 1; k <= n; k++) {
        const dir = workspace.copy();
        edited(dir);
        loraflow(dir, ["compile", "job.lf"], killAt(syscall, k));
        expect([old, fresh], `killed at ${syscall} #${k}`).toContainEqual(read(dir));
        expectComplete(path.join(dir, "out/job/adapters/a"), 8);
        fs.rmSync(dir, { recursive: true, force: true });
      }
    }
  }, 600_000);
});
