import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { tempDir } from "../helpers/hf-model.js";
import { ROOT } from "../helpers/paths.js";
import { writeTokenData } from "../helpers/train-job.js";

/** Long enough (a round per step, 1f1b; seconds even on an idle machine) that a signal lands mid-run, however late the test reads the run's output. */
const JOB = `model m { arch llama layers 4 hidden 64 heads 4 kv_heads 2 ffn 128 vocab 64 max_seq 64 dtype fp32 seed 2 }
adapter a { rank 4 dropout 0.1 targets all data "data.jsonl" format tokens seq_len 32 batch 4 micro_batch 2 steps 300 save_every 10
            optimizer adamw { lr 1e-3 warmup 5 schedule cosine } seed 4 }
adapter b { rank 2 targets q_proj v_proj data "data.jsonl" format tokens seq_len 32 batch 2 micro_batch 1 steps 250 save_every 25
            optimizer sgd { lr 0.05 momentum 0.9 } seed 5 }
cluster c { gpu cpu gpus 2 }
plan { schedule 1f1b stages 2 }
`;

const dirs: string[] = [];
let reference = "";
/** Steps slow enough (32 micro-batches each) that a second signal lands while one is in flight. */
const SLOW_JOB = JOB.replace("batch 4 micro_batch 2 steps 300 save_every 10", "batch 64 micro_batch 2 steps 8 save_every 2").replace("steps 250 save_every 25", "steps 6 save_every 3");
let slowReference = "";

function workspace(job = JOB): string {
  const dir = tempDir("loraflow-signal-");
  dirs.push(dir);
  writeTokenData(path.join(dir, "data.jsonl"), 40, 64, 3);
  fs.writeFileSync(path.join(dir, "job.lf"), job);
  return dir;
}
const loraflow = (cwd: string, ...args: string[]) => spawnSync(process.execPath, [path.join(ROOT, "bin", "loraflow.js"), ...args], { cwd, encoding: "utf8", timeout: 120_000 });
const weights = (dir: string, adapter: string) => fs.readFileSync(path.join(dir, "out/job/adapters", adapter, "adapter_model.safetensors"));

beforeAll(() => {
  reference = workspace();
  const r = loraflow(reference, "run", "job.lf");
  expect(r.status, r.stderr).toBe(0);
  slowReference = workspace(SLOW_JOB);
  expect(loraflow(slowReference, "run", "job.lf").status).toBe(0);
});
afterAll(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

/**
 * Starts a run and sends `signal` once step `after` of adapter a is printed, and with `twice` the
 * same again once the run says it is stopping; resolves with its exit and output.
 */
function interrupted(dir: string, signal: NodeJS.Signals, after: number, twice = false): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(ROOT, "bin", "loraflow.js"), "run", "job.lf"], { cwd: dir, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    let sent = 0;
    child.stdout.on("data", (d) => {
      stdout += d;
      if (sent === 0 && new RegExp(`a\\s+step\\s+${after}/`).test(stdout)) {
        sent = 1;
        child.kill(signal);
      }
    });
    child.stderr.on("data", (d) => {
      stderr += d;
      if (twice && sent === 1 && stderr.includes("finishing the round in flight")) {
        sent = 2;
        child.kill(signal);
      }
    });
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

describe("Ctrl-C and SIGTERM", () => {
  it.each([
    ["SIGINT", 130],
    ["SIGTERM", 143],
  ] as const)("%s finishes the round in flight (a step of each adapter, under 1f1b), saves the run's state, says where, exits %i; --resume ends with the bits of a run never stopped", async (signal, code) => {
    const dir = workspace();
    const r = await interrupted(dir, signal, 8);
    expect(r.code, r.stderr).toBe(code);
    expect(r.stderr).toContain(`loraflow: ${signal}: finishing the round in flight, then saving the run's state`);
    const where = /stopped after round (\d+) of (\d+); the run's state is in (\S+): `loraflow run out\/job --resume` continues/.exec(r.stderr);
    expect(where, r.stderr).not.toBeNull();
    expect(Number(where![1])).toBeLessThan(Number(where![2]));
    expect(fs.existsSync(path.join(dir, where![3]!, "run.json"))).toBe(true);
    // Nothing final yet.
    expect(fs.existsSync(path.join(dir, "out/job/adapters/a/adapter_model.safetensors"))).toBe(false);

    const resumed = loraflow(dir, "run", "out/job", "--resume");
    expect(resumed.status, resumed.stderr).toBe(0);
    expect(resumed.stdout).toContain(`resumed after round ${where![1]}`);
    for (const a of ["a", "b"]) expect(weights(dir, a).equals(weights(reference, a)), `adapter ${a}`).toBe(true);
    expect(fs.readdirSync(path.join(dir, "out/job/adapters/a")).sort()).toEqual(fs.readdirSync(path.join(reference, "out/job/adapters/a")).sort());
  });

  it("a second Ctrl-C exits at once, leaving the last complete checkpoint, which resumes to the same bits", async () => {
    const dir = workspace(SLOW_JOB);
    const r = await interrupted(dir, "SIGINT", 5, true);
    expect(r.code, r.stderr).toBe(130);
    expect(r.stderr).toContain("SIGINT again: exiting now; the last complete checkpoint stands");
    expect(r.stderr).not.toContain("stopped after round");
    const resumed = loraflow(dir, "run", "out/job", "--resume");
    expect(resumed.status, resumed.stderr).toBe(0);
    expect(resumed.stdout).toMatch(/resumed after round [1-9]/);
    for (const a of ["a", "b"]) expect(weights(dir, a).equals(weights(slowReference, a)), `adapter ${a}`).toBe(true);
  });
});
