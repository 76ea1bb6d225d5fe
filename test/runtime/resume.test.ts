import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RESUME_DIR, readResumeState, runIdentity } from "../../runtime/checkpoint/resume-state.js";
import { RunError } from "../../runtime/errors.js";
import { runInputs, runPlan, type RunResult } from "../../runtime/run.js";
import { tempDir } from "../helpers/hf-model.js";
import { compileOrThrow, writeTokenData } from "../helpers/train-job.js";

/** Adapters with dropout, several epochs (so the data is reshuffled), AdamW and SGD with momentum. */
const JOB = (schedule: string, stages: number) => `
model toy { arch llama layers 4 hidden 32 heads 4 kv_heads 2 ffn 48 vocab 64 max_seq 32 dtype fp32 seed 3 }
adapter a { rank 4 alpha 8 dropout 0.1 targets q_proj v_proj data "a.jsonl" format tokens seq_len 16 batch 4 micro_batch 2 epochs 3 save_every 2
            optimizer adamw { lr 1e-2 weight_decay 0.01 warmup 2 schedule cosine clip 0.5 } seed 11 }
adapter b { rank 2 alpha 4 dropout 0.05 targets all data "b.jsonl" format tokens pack true seq_len 24 batch 2 micro_batch 1 steps 9 save_every 3
            optimizer sgd { lr 0.1 momentum 0.9 } seed 12 }
adapter c { rank 2 targets mlp data "a.jsonl" format tokens seq_len 16 batch 2 micro_batch 1 steps 7 save_every 4
            optimizer adamw { lr 5e-3 } seed 13 }
cluster box { gpu cpu gpus 4 }
plan { schedule ${schedule} stages ${stages} }`;

let dir: string;
beforeAll(() => {
  dir = tempDir("loraflow-resume-");
  writeTokenData(path.join(dir, "a.jsonl"), 10, 64, 1);
  writeTokenData(path.join(dir, "b.jsonl"), 14, 64, 2);
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

let runs = 0;
function planIn(schedule: string, stages: number) {
  const planDir = path.join(dir, `plan-${runs++}`);
  return { plan: compileOrThrow(JOB(schedule, stages), { baseDir: dir, planDir }), planDir };
}

function expectSameBits(got: RunResult, want: RunResult): void {
  want.adapters.forEach((w, i) => {
    for (const [site, ab] of Object.entries(w.sites)) {
      for (const which of ["A", "B"] as const) {
        const g = got.adapters[i]!.sites[site]![which];
        expect(Buffer.from(g.buffer, g.byteOffset, g.byteLength).equals(Buffer.from(ab[which].buffer, ab[which].byteOffset, ab[which].byteLength)), `${w.name} ${site}.${which}`).toBe(true);
      }
    }
  });
}

describe("resume", () => {
  it.each([
    ["1f1b", 2],
    ["mlora", 3],
    ["batch", 2],
    ["auto", 2],
  ])("a run stopped mid-way and resumed ends with the same bits as one never stopped (%s on %i stages)", async (schedule, stages) => {
    const whole = planIn(schedule, stages);
    const want = await runPlan(whole.plan, whole.planDir);

    // Stopped after every round (a stop asked for before the run starts ends its first round)
    // and resumed each time: every round boundary is a place the run is cut and continued.
    const parts = planIn(schedule, stages);
    const aborted = AbortSignal.abort();
    let last: RunResult | undefined;
    let stops = 0;
    for (let run = 0; run < 100; run++) {
      last = await runPlan(parts.plan, parts.planDir, { stop: aborted, resume: run > 0 });
      if (!last.stopped) break;
      stops++;
      expect(last.stopped.roundsDone).toBe(run + 1);
      expect(last.stopped.state).toBe(path.join(parts.planDir, RESUME_DIR, `state-${run + 1}`));
      // Nothing final is written by a stopped run: the out folders are as they were (absent).
      expect(fs.existsSync(path.join(parts.planDir, "adapters", "a", "adapter_model.safetensors"))).toBe(false);
    }
    expect(stops).toBeGreaterThanOrEqual(2);
    expect(last!.resumedFrom?.roundsDone).toBe(stops);
    expectSameBits(last!, want);
    // metrics.jsonl: every step once, at full precision, the same figures as the run never stopped.
    const rows = (d: string) =>
      fs.readFileSync(path.join(d, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => {
        const { seconds, ...rest } = JSON.parse(l) as Record<string, unknown>;
        expect(typeof seconds).toBe("number");
        return rest;
      });
    const sorted = (r: Record<string, unknown>[]) => [...r].sort((x, y) => String(x["adapter"]).localeCompare(String(y["adapter"])) || (x["step"] as number) - (y["step"] as number));
    expect(sorted(rows(parts.planDir))).toEqual(sorted(rows(whole.planDir)));
    expect(rows(whole.planDir)).toHaveLength(whole.plan.adapters.reduce((n, a) => n + a.steps, 0));
    expect(Object.keys(rows(whole.planDir)[0]!).sort()).toEqual(["adapter", "counted_tokens", "grad_norm", "loss", "lr", "step", "tokens"]);
    // The adapters on disk too, and every checkpoint the uninterrupted run wrote, optimizer state included.
    for (const a of ["a", "b", "c"]) {
      const wantDir = path.join(whole.planDir, "adapters", a);
      const gotDir = path.join(parts.planDir, "adapters", a);
      const names = fs.readdirSync(wantDir).sort();
      expect(fs.readdirSync(gotDir).sort()).toEqual(names);
      for (const name of names.filter((n) => n.startsWith("checkpoint-"))) {
        for (const f of ["adapter_model.safetensors", "optimizer.safetensors", "trainer_state.json"]) {
          expect(fs.readFileSync(path.join(gotDir, name, f)).equals(fs.readFileSync(path.join(wantDir, name, f))), `${a}/${name}/${f}`).toBe(true);
        }
      }
    }
  });

  it("refuses what it cannot resume: no state, another step limit, changed data", async () => {
    const p = planIn("1f1b", 2);
    await expect(runPlan(p.plan, p.planDir, { resume: true })).rejects.toThrow(/nothing to resume: .*resume holds no checkpoint/);
    await runPlan(p.plan, p.planDir, { stop: AbortSignal.abort(), maxSteps: 6 });
    await expect(runPlan(p.plan, p.planDir, { resume: true })).rejects.toThrow(/written by a run with --max-steps 6; resume with the same/);
    const identity = runIdentity(p.plan, p.planDir, 6, runInputs(p.plan, p.planDir));
    expect(readResumeState(p.planDir, p.plan, identity).roundsDone).toBeGreaterThan(0);
    fs.appendFileSync(path.join(dir, "b.jsonl"), '{"input_ids": [1, 2, 3]}\n');
    try {
      await runPlan(p.plan, p.planDir, { resume: true, maxSteps: 6 });
      throw new Error("resumed");
    } catch (e) {
      expect(e).toBeInstanceOf(RunError);
      expect((e as RunError).code).toBe("LF6013");
      expect((e as Error).message).toMatch(/b\.jsonl changed since .*state-\d+ was written/);
    } finally {
      writeTokenData(path.join(dir, "b.jsonl"), 14, 64, 2);
    }
  });
});
