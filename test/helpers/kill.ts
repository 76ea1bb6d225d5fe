import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect } from "vitest";
import { ADAPTER_MARK } from "../../runtime/output/owned.js";
import { readSafetensorsFile } from "../../runtime/weights/safetensors.js";
import { tempDir } from "./hf-model.js";
import { ROOT } from "./paths.js";
import { writeTokenData } from "./train-job.js";

/** What the kill tests share: strace to count and to kill at syscalls, and the folder checks. */

const STRACE = spawnSync("strace", ["-V"]).status === 0;
/** describe, or describe.skip on a machine without strace (CI installs it and requires it). */
export function withStrace(name: string, body: () => void): void {
  (STRACE || process.env["LORAFLOW_REQUIRE_STRACE"] ? describe : describe.skip)(name, body);
}

export const SYSCALLS = ["rename", "renameat2", "mkdir", "unlink", "rmdir"];

export function loraflow(cwd: string, args: string[], strace: string[] = []) {
  const command = strace.length > 0 ? "strace" : process.execPath;
  const argv = [...strace, ...(strace.length > 0 ? [process.execPath] : []), path.join(ROOT, "bin", "loraflow.js"), ...args];
  return spawnSync(command, argv, { cwd, encoding: "utf8", timeout: 120_000 });
}

/** strace's arguments that SIGKILL the command at its k-th call of `syscall`. */
export const killAt = (syscall: string, k: number) => ["-f", "-qq", "-o", "/dev/null", "-e", `trace=${syscall}`, "-e", `inject=${syscall}:signal=KILL:when=${k}`];

/** How many times a command calls each syscall (strace counts them). */
export function counts(cwd: string, args: string[]): Map<string, number> {
  const log = path.join(cwd, "..", `${path.basename(cwd)}.strace`);
  const r = loraflow(cwd, args, ["-f", "-qq", "-o", log, "-e", `trace=${SYSCALLS.join(",")}`]);
  expect(r.status, r.stderr).toBe(0);
  const text = fs.readFileSync(log, "utf8");
  fs.rmSync(log);
  return new Map(SYSCALLS.map((s) => [s, text.split("\n").filter((l) => new RegExp(`^\\d+\\s+${s}\\(`).test(l)).length]));
}

/** A complete adapter folder of loraflow's: both files, the config parsing, every tensor read. Returns the weights' bytes. */
export function expectComplete(dir: string, tensors: number): string {
  const config = JSON.parse(fs.readFileSync(path.join(dir, "adapter_config.json"), "utf8"));
  expect(config.peft_type).toBe("LORA");
  const file = readSafetensorsFile(path.join(dir, "adapter_model.safetensors"), "initAdapterInvalid");
  expect(file.metadata[ADAPTER_MARK.key]).toBe(ADAPTER_MARK.value);
  expect(file.tensors.size).toBe(tensors);
  return fs.readFileSync(path.join(dir, "adapter_model.safetensors")).toString("base64");
}

/** A fresh copy of `dir` (links kept as links), remembered in `scratch` for removal. */
export function copyFolder(dir: string, scratch: string[]): string {
  const copy = tempDir("loraflow-killed-");
  scratch.push(copy);
  fs.cpSync(dir, copy, { recursive: true, verbatimSymlinks: true });
  return copy;
}

/**
 * The job the kill tests run: one adapter of 2 layers x (q_proj, v_proj), a checkpoint every step,
 * and (1f1b: a round per step) the run's state saved after every round but the last.
 */
export const KILL_JOB = `model tiny { arch llama layers 2 hidden 16 heads 4 kv_heads 2 ffn 32 vocab 64 max_seq 64 dtype fp32 }
adapter a { data "data.jsonl" format tokens seq_len 16 batch 2 micro_batch 1 steps 3 save_every 1 dropout 0.1 }
plan { schedule 1f1b }
`;

/**
 * A folder with KILL_JOB, its data and a finished run of it (so that what is killed replaces an
 * earlier adapter), and the scratch copies made of it, all removed after the file's tests.
 */
export function killWorkspace(prefix: string): { base: () => string; copy: () => string } {
  let base = "";
  const scratch: string[] = [];
  beforeAll(() => {
    base = tempDir(prefix);
    writeTokenData(path.join(base, "data.jsonl"), 12, 64, 9);
    fs.writeFileSync(path.join(base, "job.lf"), KILL_JOB);
    expect(loraflow(base, ["run", "job.lf", "--max-steps", "2"]).status).toBe(0);
  });
  afterAll(() => [base, ...scratch].forEach((d) => fs.rmSync(d, { recursive: true, force: true })));
  return { base: () => base, copy: () => copyFolder(base, scratch) };
}
