import * as fs from "node:fs";
import * as path from "node:path";
import { expect, it } from "vitest";
import { counts, expectComplete as complete, killAt, killWorkspace, loraflow, withStrace } from "../helpers/kill.js";

/**
 * SIGKILL at every file-system change a run makes (each rename, exchange, mkdir, unlink and
 * rmdir, one at a time, delivered by strace as the call is made), then: every adapter and
 * checkpoint folder on disk is complete and loadable, the out folder is the previous run's or
 * the new one, and the next run puts right what was left and finishes clean.
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
  it("leaves every adapter and checkpoint folder complete, and the next run finishes clean", () => {
    const args = ["run", "out/job"];
    const previous = expectComplete(path.join(workspace.base(), "out/job/adapters/a"));
    const calls = counts(copyOfBase(), args);
    expect(calls.get("rename")).toBeGreaterThan(5);
    expect(calls.get("renameat2")).toBeGreaterThan(0);
    let kills = 0;
    let sawNew = false;
    for (const [syscall, n] of calls) {
      for (let k = 1; k <= n; k++) {
        const dir = copyOfBase();
        const r = loraflow(dir, args, killAt(syscall, k));
        const at = `killed at ${syscall} #${k}`;
        expect(r.status, at).not.toBe(0);
        kills++;
        const out = path.join(dir, "out/job/adapters/a");
        expectEveryFolderComplete(dir);
        const now = expectComplete(out);
        if (now !== previous) sawNew = true;
        // The next run puts right what the killed one left, and leaves nothing of it behind.
        const next = loraflow(dir, args);
        expect(next.status, `${at}, then: ${next.stderr}`).toBe(0);
        expect(fs.readdirSync(path.join(dir, "out/job/adapters")), at).toEqual(["a"]);
        expect(fs.readdirSync(out).sort(), at).toEqual(["adapter_config.json", "adapter_model.safetensors", "checkpoint-1", "checkpoint-2", "checkpoint-3"]);
        expectEveryFolderComplete(dir);
        fs.rmSync(dir, { recursive: true, force: true });
      }
    }
    expect(kills).toBeGreaterThan(15);
    // Late kills land after the swap: the new adapter is there, whole.
    expect(sawNew).toBe(true);
  }, 600_000);
});
