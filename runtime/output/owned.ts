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

/** adapter_model.safetensors that loraflow wrote: its header reads and carries the mark. */
function ourAdapterFile(file: string): boolean {
  const header = readSafetensorsHeader(nodeHost, file);
  return header.ok && header.metadata[ADAPTER_MARK.key] === ADAPTER_MARK.value;
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
  if (hasWeights && !ourAdapterFile(path.join(dir, ADAPTER_FILES[1]))) return notOwned("holds an adapter_model.safetensors loraflow did not write");
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
    if (compileFolder && (e.name === "inputs" || e.name === "outputs") && e.isDirectory() && onlyLinks(full)) continue;
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

/** A folder of symbolic links (in folders): what a compile makes in `inputs/` and `outputs/`. */
function onlyLinks(dir: string): boolean {
  return entries(dir).every((e) => e.isSymbolicLink() || (e.isDirectory() && onlyLinks(path.join(dir, e.name))));
}
