import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { demoJob } from "../../cli/commands/demo.js";
import { adapterDataset } from "../../runtime/data/adapter-data.js";
import { loadTokenizer } from "../../runtime/data/tokenizer.js";
import { writeDemoModel } from "../../runtime/demo/model-folder.js";
import { ALPHABET, taskInputs, TASKS } from "../../runtime/demo/tasks.js";
import { tempDir } from "../helpers/hf-model.js";
import { ROOT } from "../helpers/paths.js";
import { compileOrThrow } from "../helpers/train-job.js";

// The demo itself (`loraflow demo --quick`, about 45 s) runs in .ci/run, as a newcomer runs it;
// these are the pieces that decide whether it can learn.
let dir: string;
beforeAll(() => {
  dir = tempDir("loraflow-demo-");
  writeDemoModel(path.join(dir, "model"), 7);
  fs.mkdirSync(path.join(dir, "data"));
  for (const task of TASKS) {
    const { train } = taskInputs(task, 40, 5, 7);
    fs.writeFileSync(path.join(dir, "data", `${task.name}.jsonl`), train.map((x) => JSON.stringify(task.line(x))).join("\n") + "\n");
  }
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe("the demo", () => {
  it("its tokenizer keeps every symbol of the skills one token, so a skill is a symbol-to-symbol map", () => {
    const tok = loadTokenizer(path.join(dir, "model"));
    for (const c of [...ALPHABET, ...ALPHABET.toUpperCase(), ..."0123456789"]) expect(tok.encode(` ${c}`), c).toHaveLength(1);
    expect(tok.size).toBeLessThanOrEqual(512);
  });

  it.each([false, true])("every example fits its seq_len whole, EOS included (quick %s)", (quick) => {
    const planDir = path.join(dir, `plan-${quick}`);
    const plan = compileOrThrow(demoJob(quick), { baseDir: dir, planDir });
    expect(plan.stages).toHaveLength(2);
    for (const a of plan.adapters) {
      const { stats } = adapterDataset(plan, planDir, a);
      expect(stats, a.name).toMatchObject({ truncated: 0, dropped: 0, examples: 40 });
    }
  });

  it("held-out prompts are none of the training inputs", () => {
    for (const task of TASKS) {
      const { train, heldOut } = taskInputs(task, 400, 40, 7);
      expect(heldOut).toHaveLength(40);
      expect(heldOut.some((x) => train.includes(x))).toBe(false);
    }
  });

  it("refuses a folder it did not write, touching nothing", () => {
    const foreign = path.join(dir, "foreign");
    fs.mkdirSync(foreign);
    fs.writeFileSync(path.join(foreign, "notes.txt"), "mine");
    const r = spawnSync(process.execPath, [path.join(ROOT, "bin", "loraflow.js"), "demo", "--quick", "--out", foreign], { encoding: "utf8", timeout: 60_000 });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/error LF6004: .*foreign holds notes\.txt, which the demo did not write; choose another --out/);
    expect(fs.readdirSync(foreign)).toEqual(["notes.txt"]);
  });
});
