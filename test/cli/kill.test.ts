import * as fs from "node:fs";
import * as path from "node:path";
import { expect, it } from "vitest";
import { counts, expectComplete as complete, killAt, killWorkspace, loraflow, withStrace } from "../helpers/kill.js";

/**
 * SIGKILL at the file-system changes a run makes (each rename and exchange, every other mkdir,
 * unlink and rmdir, one at a time, delivered by strace as the call is made), then: every
 * adapter and checkpoint folder on disk is complete and loadable, the out folder is the
 * previous run's or the new one, and the next run (`--resume` from the last complete state the
 * killed run saved, where there is one) puts right what was left and finishes clean, with the
 * adapter of a run never killed, to the bit.
 * (kill-compile.test.ts does the same to `loraflow compile`.)
 */
const workspace = killWorkspace("loraflow-kill-");
const copyOfBase = workspace.copy;

// 2 layers x (q_proj, v_proj) x (A, B)
const expectComplete = (dir: string) => complete(dir, 8);

/** Every folder named like an adapter or checkpoint anywhere below `dir` must be complete. */
function expectEveryFolderComplete(dir: string): void {
  for (const e of fs.readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!e.isDirectory()) continue;
    const full = path.join(e.parentPath, e.name);
    if (/^checkpoint-\d+$/.test(e.name) || (e.name === "a" && path.basename(e.parentPath) === "adapters")) expectComplete(full);
  }
}

withStrace("a run killed at any file-system change", () => {
  it("leaves every adapter and checkpoint folder complete, and the next run (resumed where it can be) finishes clean, to the same bits", () => {
    const args = ["run", "out/job"];
    const previous = expectComplete(path.join(workspace.base(), "out/job/adapters/a"));
    const reference = copyOfBase();
    expect(loraflow(reference, args).status).toBe(0);
    const uninterrupted = expectComplete(path.join(reference, "out/job/adapters/a"));
    let resumed = 0;
    const calls = counts(copyOfBase(), args);
    expect(calls.get("rename")).toBeGreaterThan(5);
    expect(calls.get("renameat2")).toBeGreaterThan(0);
    let kills = 0;
    let sawNew = false;
    for (const [syscall, n] of calls) {
      // Every rename (each file and folder appears whole by one) and every other call of the
      // rest, to keep the test's time in bounds.
      for (let k = 1; k <= n; k += syscall.startsWith("rename") ? 1 : 2) {
        const dir = copyOfBase();
        const r = loraflow(dir, args, killAt(syscall, k));
        const at = `killed at ${syscall} #${k}`;
        expect(r.status, at).not.toBe(0);
        kills++;
        const out = path.join(dir, "out/job/adapters/a");
        expectEveryFolderComplete(dir);
        const now = expectComplete(out);
        if (now !== previous) sawNew = true;
        // The next run resumes from the last complete state the killed one saved, or, where it
        // saved none (or only the earlier run's, of another step limit), starts again; either
        // way it puts right what the killed one left and leaves nothing of it behind.
        let next = loraflow(dir, [...args, "--resume"]);
        if (next.status === 0) resumed++;
        else {
          expect(next.stderr, at).toMatch(/error LF6013: (nothing to resume|.*was written by a run with --max-steps 2)/);
          next = loraflow(dir, args);
        }
        expect(next.status, `${at}, then: ${next.stderr}`).toBe(0);
        expect(expectComplete(out), `${at}: the adapter of an uninterrupted run`).toBe(uninterrupted);
        expect(fs.readdirSync(path.join(dir, "out/job/adapters")), at).toEqual(["a"]);
        expect(fs.readdirSync(out).sort(), at).toEqual(["adapter_config.json", "adapter_model.safetensors", "checkpoint-1", "checkpoint-2", "checkpoint-3"]);
        expectEveryFolderComplete(dir);
        fs.rmSync(dir, { recursive: true, force: true });
      }
    }
    expect(kills).toBeGreaterThan(15);
    // Kills after the first state was saved resume from it.
    expect(resumed).toBeGreaterThan(kills / 3);
    // Late kills land after the swap: the new adapter is there, whole.
    expect(sawNew).toBe(true);
  }, 600_000);
});
