import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import type { Plan } from "../../compiler/index.js";
import { RunError } from "../errors.js";
import { removeTree, syncFolder, writeNewFile } from "../output/atomic.js";
import { CHECKPOINT_EXTRA_FILES, leftoverOf, tempName } from "../output/owned.js";
import { writeAdapterFiles, type AdapterFiles } from "../output/adapter-output.js";
import { encodeAdapter, loadLora, type LoraSites } from "../weights/lora.js";
import { decodeOptimizerState, encodeOptimizerState, type SiteMoments } from "./optimizer-state.js";

/**
 * The state a run can be resumed from: the whole run after a round of its schedule (rounds are
 * the schedule's closed units: no micro-batch crosses one), in PLAN_DIR/resume/state-ROUNDS/:
 * run.json (what plan, data and step limit it belongs to) and per adapter NAME/ with the PEFT
 * files, optimizer.safetensors and trainer_state.json. A state appears complete under its name in
 * one rename; the one before is removed only after, so a kill at any instant leaves one whole.
 */
export const RESUME_DIR = "resume";
export const RESUME_FORMAT = "loraflow.resume/1";
export const RUN_FILE = "run.json";

export interface RunSnapshot {
  roundsDone: number;
  steps: number[];
  weights: LoraSites[];
  moments: SiteMoments[];
}

export interface ResumeState extends RunSnapshot {
  dir: string;
}

/** JSON with sorted keys: the same plan hashes the same however its object was built. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value !== null && typeof value === "object") {
    return `{${Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((value as Record<string, unknown>)[k])}`)
      .join(",")}}`;
  }
  return JSON.stringify(value);
}

const sha256 = (data: string | Uint8Array) => createHash("sha256").update(data).digest("hex");

/** What a state belongs to: the plan, the step limit, and the bytes of every file the data is made from. */
export interface RunIdentity {
  plan: string;
  maxSteps: number | null;
  inputs: Record<string, string>;
}

export function runIdentity(plan: Plan, planDir: string, maxSteps: number | undefined, inputFiles: string[]): RunIdentity {
  const inputs: Record<string, string> = {};
  // Named from the plan's folder: the same run is recognised however its folder is reached.
  for (const f of inputFiles) inputs[path.relative(planDir, f) || "."] = sha256(fs.readFileSync(f));
  return { plan: sha256(canonical(plan)), maxSteps: maxSteps ?? null, inputs };
}

/** A checkpoint of an adapter after `step` steps: its PEFT files, its optimizer state, and trainer_state.json. */
export function checkpointFiles(adapter: Plan["adapters"][number], sites: LoraSites, moments: SiteMoments, step: number, sequences: number, baseModel: string): AdapterFiles {
  return { ...encodeAdapter(adapter, sites, baseModel), optimizer: encodeOptimizerState(adapter, sites, moments, step), trainerState: trainerState(adapter, step, sequences) };
}

/** HF Trainer's trainer_state.json, with where the adapter is in its data. */
function trainerState(adapter: Plan["adapters"][number], steps: number, sequences: number): string {
  return (
    JSON.stringify(
      {
        global_step: steps,
        max_steps: adapter.steps,
        epoch: sequences > 0 ? (steps * adapter.batch) / sequences : 0,
        sequences_seen: steps * adapter.batch,
        train_batch_size: adapter.batch,
        seed: adapter.seed,
      },
      null,
      2,
    ) + "\n"
  );
}

const stateName = (rounds: number) => `state-${rounds}`;
const STATE = /^state-(\d+)$/;

/** Writes the run's state after `snapshot.roundsDone` rounds, then removes the states before it. Returns its folder. */
export function writeResumeState(planDir: string, plan: Plan, identity: RunIdentity, snapshot: RunSnapshot, baseModel: string, sequences: number[]): string {
  const root = path.join(planDir, RESUME_DIR);
  fs.mkdirSync(root, { recursive: true });
  const target = path.join(root, stateName(snapshot.roundsDone));
  const staging = tempName(target);
  fs.mkdirSync(staging);
  try {
    plan.adapters.forEach((a, i) => {
      const dir = path.join(staging, a.name);
      fs.mkdirSync(dir);
      writeAdapterFiles(dir, checkpointFiles(a, snapshot.weights[i]!, snapshot.moments[i]!, snapshot.steps[i]!, sequences[i]!, baseModel), true);
    });
    const run = { format: RESUME_FORMAT, ...identity, roundsDone: snapshot.roundsDone, adapters: plan.adapters.map((a, i) => ({ name: a.name, steps: snapshot.steps[i] })) };
    // Written last: a state folder with run.json is complete.
    writeNewFile(path.join(staging, RUN_FILE), JSON.stringify(run, null, 2) + "\n");
    syncFolder(staging);
    // The same round again (a resumed run retracing it) replaces its earlier writing.
    if (fs.existsSync(target)) removeTree(target);
    fs.renameSync(staging, target);
    syncFolder(root);
  } catch (e) {
    fs.rmSync(staging, { recursive: true, force: true });
    throw e;
  }
  for (const name of fs.readdirSync(root)) {
    const full = path.join(root, name);
    if (full === target) continue;
    const l = leftoverOf(root, name);
    if (STATE.test(name) || (l !== undefined && l.abandoned)) removeTree(full);
  }
  return target;
}

/**
 * The latest state of this run to resume from: the plan, step limit and inputs must be the ones
 * it was written for. Refuses, saying why, when there is none or it belongs to another run.
 */
export function readResumeState(planDir: string, plan: Plan, identity: RunIdentity): ResumeState {
  const root = path.join(planDir, RESUME_DIR);
  const states = (fs.existsSync(root) ? fs.readdirSync(root) : [])
    .map((n) => ({ n, m: STATE.exec(n) }))
    .filter((x) => x.m !== null && fs.existsSync(path.join(root, x.n, RUN_FILE)))
    .sort((a, b) => Number(b.m![1]) - Number(a.m![1]));
  if (states.length === 0) throw new RunError("resumeInvalid", `nothing to resume: ${root} holds no checkpoint (a run writes one every save_every steps, and when it is stopped)`);
  const dir = path.join(root, states[0]!.n);
  const file = path.join(dir, RUN_FILE);
  let run: Record<string, unknown>;
  try {
    run = JSON.parse(fs.readFileSync(file, "utf8")) as Record<string, unknown>;
  } catch (e) {
    throw new RunError("resumeInvalid", `${file}: cannot be read (${(e as Error).message})`);
  }
  if (run["format"] !== RESUME_FORMAT) throw new RunError("resumeInvalid", `${file}: format ${JSON.stringify(run["format"])}, not ${RESUME_FORMAT}`);
  if (run["plan"] !== identity.plan) throw new RunError("resumeInvalid", `${dir} is a checkpoint of another plan (the job or its compile changed since): it cannot be resumed with this one`);
  if (run["maxSteps"] !== identity.maxSteps) throw new RunError("resumeInvalid", `${dir} was written by a run with ${run["maxSteps"] === null ? "no --max-steps" : `--max-steps ${run["maxSteps"]}`}; resume with the same`);
  const inputs = (run["inputs"] ?? {}) as Record<string, unknown>;
  for (const [f, hash] of Object.entries(identity.inputs)) {
    if (inputs[f] !== hash) throw new RunError("resumeInvalid", `${f} changed since ${dir} was written: a resumed run would not train what the first one did`);
  }
  const rounds = Number(states[0]!.m![1]);
  if (run["roundsDone"] !== rounds) throw new RunError("resumeInvalid", `${file}: roundsDone ${JSON.stringify(run["roundsDone"])} in a folder named for ${rounds}`);
  const listed = run["adapters"] as { name?: unknown; steps?: unknown }[] | undefined;
  const steps: number[] = [];
  const weights: LoraSites[] = [];
  const moments: SiteMoments[] = [];
  plan.adapters.forEach((a, i) => {
    const entry = listed?.[i];
    if (entry?.name !== a.name || !Number.isInteger(entry.steps) || (entry.steps as number) < 0 || (entry.steps as number) > a.steps) {
      throw new RunError("resumeInvalid", `${file}: adapter ${i} is not "${a.name}" with a step count within its ${a.steps}`);
    }
    const adapterDir = path.join(dir, a.name);
    const sites = loadLora(adapterDir, plan, a);
    weights.push(sites);
    moments.push(decodeOptimizerState(path.join(adapterDir, CHECKPOINT_EXTRA_FILES[0]), a, sites));
    steps.push(entry.steps as number);
  });
  return { dir, roundsDone: rounds, steps, weights, moments };
}
