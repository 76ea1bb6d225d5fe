import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { planMemory } from "../../compiler/index.js";
import { runPlan } from "../../runtime/run.js";
import { tempDir } from "../helpers/hf-model.js";
import { EXAMPLES, EXAMPLE_JOBS } from "../helpers/paths.js";
import { compileOrThrow, writeTokenData } from "../helpers/train-job.js";

/** An example job on a model small enough to train in a test: its adapters as written, on tokens data, two steps each. */
function shrink(source: string, schedule: string, stages: number): string {
  return (
    source
      .replace(/model\s+\w+\s*\{[^}]*\}/, "model tiny { arch llama layers 4 hidden 32 heads 4 kv_heads 2 ffn 48 vocab 64 max_seq 32 dtype fp32 }")
      .replace(/data\s+"[^"]*"\s+format\s+\w+/g, 'data "tokens.jsonl" format tokens')
      .replace(/seq_len\s+\d+/g, "seq_len 8")
      .replace(/\brank\s+(\d+)/g, (_, r: string) => `rank ${Math.min(Number(r), 4)}`)
      .replace(/\b(steps|epochs)\s+\d+/g, "steps 2")
      .replace(/\bgpus\s+(\d+)/, (_, n: string) => `gpus ${Math.max(4, Number(n))}`)
      .replace(/plan\s*\{[^}]*\}/, "") + `\nplan { schedule ${schedule} stages ${stages} }\n`
  );
}

let dir: string;
beforeAll(() => {
  dir = tempDir("loraflow-arenas-");
  writeTokenData(path.join(dir, "tokens.jsonl"), 40, 64, 5);
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe("the engine's arenas are the plan's figures, and its loop allocates nothing", () => {
  it.each(EXAMPLE_JOBS)("%s under every schedule", async (name) => {
    const source = fs.readFileSync(path.join(EXAMPLES, name), "utf8");
    for (const [schedule, stages] of [["gpipe", 2], ["1f1b", 3], ["batch", 2], ["mlora", 3]] as const) {
      const plan = compileOrThrow(shrink(source, schedule, stages), { baseDir: dir, planDir: path.join(dir, `plan-${name}-${schedule}`) });
      const run = await runPlan(plan, path.join(dir, `plan-${name}-${schedule}`), { save: false });
      const planned = planMemory(plan);
      const label = `${name} ${schedule} on ${stages} stages`;
      run.stages.forEach((s, i) => {
        expect(s.weightBytes, `${label}: stage ${i} weights`).toBe(planned[i]!.weightBytes);
        expect(s.adapterBytes, `${label}: stage ${i} adapters`).toBe(planned[i]!.adapterBytes);
        expect(s.activationBytes, `${label}: stage ${i} activations`).toBe(planned[i]!.activationBytes + planned[i]!.workspaceBytes);
      });
      // -1: a sanitized build, whose allocator cannot be counted.
      if (run.loopAllocations !== -1) expect(run.loopAllocations, `${label}: allocations inside the loop`).toBe(0);
    }
  });
});
