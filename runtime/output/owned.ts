import * as fs from "node:fs";
import * as path from "node:path";
import { nodeHost, readSafetensorsHeader } from "../../compiler/index.js";

/**
 * What loraflow wrote, told apart from what it did not: a run or a compile replaces or removes
 * only folders it recognises as its own, and refuses to touch anything else.
 */

/** Written into every adapter_model.safetensors loraflow saves (`__metadata__`), so it knows its own. */
export const ADAPTER_MARK = { key: "loraflow", value: "adapter" } as const;

export const ADAPTER_FILES = ["adapter_config.json", "adapter_model.safetensors"] as const;
/** What a checkpoint holds besides an adapter's files: its optimizer's state and where it is in its data. */
export const CHECKPOINT_EXTRA_FILES = ["optimizer.safetensors", "trainer_state.json"] as const;
/** Written into every optimizer.safetensors loraflow saves. */
export const OPTIMIZER_MARK = { key: "loraflow", value: "optimizer" } as const;

/** The files `loraflow run` appends to in a plan's folder: every step's figures, at full precision. */
export const RUN_LOG_FILES = ["metrics.jsonl", "trace.run.json"] as const;

/** The files `loraflow compile` writes into its folder. */
export const COMPILE_FILES = ["plan.json", "summary.json", "plan.ts", "schedule.svg", "trace.json", "report.html"] as const;

const TEMP = /^\.(.+)\.loraflow-(tmp|old)-(\d+)-\d+$/;

/** A staging name beside `target` that no other process uses, and that leftoverOf recognises. */
let counter = 0;
export function tempName(target: string, kind: "tmp" | "old" = "tmp"): string {
  return path.join(path.dirname(target), `.${path.basename(target)}.loraflow-${kind}-${process.pid}-${counter++}`);
}

/** For a staging name: what it stood beside and whether its writer is gone; undefined if not one of ours. */
export function leftoverOf(dir: string, entry: string): { target: string; kind: "tmp" | "old"; mine: boolean; abandoned: boolean } | undefined {
  const m = TEMP.exec(entry);
  if (!m) return undefined;
  const pid = Number(m[3]);
  const mine = pid === process.pid;
  return { target: path.join(dir, m[1]!), kind: m[2] as "tmp" | "old", mine, abandoned: !mine && !alive(pid) };
}

/** The staging names of `target` beside it, each with what leftoverOf says of it. */
export function leftoversOf(target: string): { name: string; path: string; kind: "tmp" | "old"; mine: boolean; abandoned: boolean }[] {
  const dir = path.dirname(target);
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  return names.flatMap((name) => {
    const l = leftoverOf(dir, name);
    return l !== undefined && l.target === target ? [{ name, path: path.join(dir, name), kind: l.kind, mine: l.mine, abandoned: l.abandoned }] : [];
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

export type Ownership = { owned: true } | { owned: false; why: string };

const owned: Ownership = { owned: true };
const notOwned = (why: string): Ownership => ({ owned: false, why });

function entries(dir: string): fs.Dirent[] {
  return fs.readdirSync(dir, { withFileTypes: true });
}

/** A safetensors file that loraflow wrote: its header reads and carries the mark. */
function marked(file: string, mark: { key: string; value: string } = ADAPTER_MARK): boolean {
  const header = readSafetensorsHeader(nodeHost, file);
  return header.ok && header.metadata[mark.key] === mark.value;
}

/** "holds a, b/ and 3 more, which loraflow did not write" */
function foreign(found: fs.Dirent[]): Ownership {
  const names = found.map((e) => e.name + (e.isDirectory() ? "/" : ""));
  const shown = names.length > 3 ? `${names.slice(0, 3).join(", ")} and ${names.length - 3} more` : names.join(", ");
  return notOwned(`holds ${shown}, which loraflow did not write`);
}

/**
 * An adapter folder loraflow wrote: adapter_config.json with adapter_model.safetensors (marked),
 * its checkpoint-STEP folders (each such a folder, without checkpoints of its own), staging
 * leftovers of its own; or only checkpoints (a run that stopped before its end); or nothing.
 * Why not, when not, is a predicate: "holds ...", "is ...".
 */
export function adapterFolderOwnership(dir: string, checkpoint = false): Ownership {
  const names = new Set<string>();
  const others: fs.Dirent[] = [];
  for (const e of entries(dir)) {
    const full = path.join(dir, e.name);
    names.add(e.name);
    if (leftoverOf(dir, e.name)) continue;
    if ((ADAPTER_FILES as readonly string[]).includes(e.name) && e.isFile()) continue;
    if (checkpoint && e.isFile() && e.name === CHECKPOINT_EXTRA_FILES[0] && marked(full, OPTIMIZER_MARK)) continue;
    if (checkpoint && e.isFile() && e.name === CHECKPOINT_EXTRA_FILES[1]) continue;
    if (!checkpoint && /^checkpoint-\d+$/.test(e.name) && e.isDirectory()) {
      const inner = adapterFolderOwnership(full, true);
      if (!inner.owned) return notOwned(`holds ${e.name}/, which ${inner.why}`);
      continue;
    }
    others.push(e);
  }
  if (others.length > 0) return foreign(others);
  const hasConfig = names.has(ADAPTER_FILES[0]);
  const hasWeights = names.has(ADAPTER_FILES[1]);
  if (hasConfig !== hasWeights) return notOwned(`holds ${hasConfig ? ADAPTER_FILES[0] : ADAPTER_FILES[1]} without ${hasConfig ? ADAPTER_FILES[1] : ADAPTER_FILES[0]}`);
  if (hasWeights && !marked(path.join(dir, ADAPTER_FILES[1]))) return notOwned("holds an adapter_model.safetensors loraflow did not write");
  if (checkpoint && !hasWeights) return notOwned("is an empty checkpoint");
  return owned;
}

/**
 * A folder every entry of which loraflow wrote: adapter folders (see above), folders of them
 * (`adapters/`), and, at the top of a compile folder, the compile's files with a loraflow plan.
 */
export function folderOwnership(dir: string, compileFolder = false): Ownership {
  const names = entries(dir);
  if (names.some((e) => (ADAPTER_FILES as readonly string[]).includes(e.name) || /^checkpoint-\d+$/.test(e.name))) return adapterFolderOwnership(dir);
  const others: fs.Dirent[] = [];
  for (const e of names) {
    const full = path.join(dir, e.name);
    if (leftoverOf(dir, e.name)) continue;
    if (compileFolder && (COMPILE_FILES as readonly string[]).includes(e.name) && e.isFile()) continue;
    if (compileFolder && e.name === RUN_LOG_FILES[0] && e.isFile() && isMetricsLog(full)) continue;
    if (compileFolder && e.name === RUN_LOG_FILES[1] && e.isFile() && isTrace(full)) continue;
    if (compileFolder && (e.name === "inputs" || e.name === "outputs") && e.isDirectory() && onlyLinks(full)) continue;
    if (compileFolder && e.name === "resume" && e.isDirectory() && !e.isSymbolicLink() && resumeFolderOwnership(full).owned) continue;
    if (e.isDirectory() && !e.isSymbolicLink() && folderOwnership(full).owned) continue;
    others.push(e);
  }
  if (others.length > 0) return foreign(others);
  if (compileFolder && names.some((e) => e.name === "plan.json")) {
    let format: unknown;
    try {
      format = (JSON.parse(fs.readFileSync(path.join(dir, "plan.json"), "utf8")) as { format?: unknown }).format;
    } catch {
      format = undefined;
    }
    if (typeof format !== "string" || !format.startsWith("loraflow.plan/")) return notOwned("holds a plan.json that is not a loraflow plan");
  }
  return owned;
}

/**
 * A run's resume folder (runtime/checkpoint/resume-state.ts): state-ROUNDS folders, each a run.json
 * of loraflow's and a checkpoint folder per adapter, and staging leftovers.
 */
export function resumeFolderOwnership(dir: string): Ownership {
  const others: fs.Dirent[] = [];
  for (const e of entries(dir)) {
    const full = path.join(dir, e.name);
    if (leftoverOf(dir, e.name)) continue;
    if (/^state-\d+$/.test(e.name) && e.isDirectory() && !e.isSymbolicLink()) {
      for (const inner of entries(full)) {
        const where = path.join(full, inner.name);
        if (inner.name === "run.json" && inner.isFile() && isResumeRun(where)) continue;
        if (inner.isDirectory() && !inner.isSymbolicLink() && adapterFolderOwnership(where, true).owned) continue;
        return notOwned(`holds ${e.name}/${inner.name}, which loraflow did not write`);
      }
      continue;
    }
    others.push(e);
  }
  return others.length > 0 ? foreign(others) : owned;
}

/** Whether every non-blank line of a JSONL file is a JSON object that `is` accepts: how loraflow knows the JSONL files it writes. */
export function everyJsonLine(file: string, is: (row: Record<string, unknown>) => boolean): boolean {
  return fs
    .readFileSync(file, "utf8")
    .split("\n")
    .every((line) => {
      if (line === "") return true;
      try {
        const row = JSON.parse(line) as unknown;
        return typeof row === "object" && row !== null && !Array.isArray(row) && is(row as Record<string, unknown>);
      } catch {
        return false;
      }
    });
}

/** metrics.jsonl as a run writes it: every line a JSON object naming an adapter and a step. */
const isMetricsLog = (file: string) => everyJsonLine(file, (row) => typeof row["adapter"] === "string" && typeof row["step"] === "number");

/** A Chrome trace loraflow wrote (runtime/measured-trace.ts). */
function isTrace(file: string): boolean {
  try {
    const t = JSON.parse(fs.readFileSync(file, "utf8")) as { traceEvents?: unknown; otherData?: { covers?: unknown } };
    return Array.isArray(t.traceEvents) && typeof t.otherData?.covers === "string";
  } catch {
    return false;
  }
}

function isResumeRun(file: string): boolean {
  try {
    const format = (JSON.parse(fs.readFileSync(file, "utf8")) as { format?: unknown }).format;
    return typeof format === "string" && format.startsWith("loraflow.resume/");
  } catch {
    return false;
  }
}

/** A folder of symbolic links (in folders): what a compile makes in `inputs/` and `outputs/`. */
function onlyLinks(dir: string): boolean {
  return entries(dir).every((e) => e.isSymbolicLink() || (e.isDirectory() && onlyLinks(path.join(dir, e.name))));
}
