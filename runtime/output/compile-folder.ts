import * as fs from "node:fs";
import * as path from "node:path";
import type { PlanLink } from "../../compiler/index.js";
import { linkTree, recoverLeftovers, removeTree, swapIn, syncFolder, writeNewFile, type Exchange, nativeExchange } from "./atomic.js";
import { COMPILE_FILES, folderOwnership, leftoverOf, tempName } from "./owned.js";

/** Folders of the links a compile makes; rewritten whole by every compile. */
const LINK_FOLDERS = ["inputs", "outputs"];

/** Stagings of live processes below `dir`: a compile must not swap a folder a run is writing into. */
function liveWriters(dir: string, depth = 3): string[] {
  const found: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const l = leftoverOf(dir, e.name);
    if (l && !l.abandoned && !l.mine) found.push(path.join(dir, e.name));
    else if (!l && depth > 0 && e.isDirectory() && !e.isSymbolicLink()) found.push(...liveWriters(path.join(dir, e.name), depth - 1));
  }
  return found;
}

/**
 * Makes a compile's links in `folder` (replacing links already there): what a tool that embeds
 * the compiler and writes plan.json itself does, so that the plan's paths lead where the job said.
 */
export function makePlanLinks(folder: string, links: readonly PlanLink[], at: string = folder): void {
  for (const link of links) {
    const where = path.join(at, link.path);
    fs.mkdirSync(path.dirname(where), { recursive: true });
    fs.rmSync(where, { force: true });
    // Relative, so the folder moves with what it points at, as a plan's own paths do.
    fs.symlinkSync(path.relative(path.dirname(path.join(folder, link.path)), link.target) || ".", where);
  }
}

export class CompileFolderError extends Error {
  override name = "CompileFolderError";
}

/**
 * Writes one compile's files and links into `dir`, all at once: they are written into a staging
 * folder beside it, with what `dir` held besides an earlier compile's files (its `adapters/`, as
 * hard links) carried over, and the staging folder is swapped in for `dir` in one step. So `dir`
 * holds one compile's files at every instant, never a mix. A folder that holds anything loraflow
 * did not write is refused, and so is one a run is writing into.
 */
export function writeCompileFolder(dir: string, files: Record<string, string>, links: readonly PlanLink[], exchange: Exchange | undefined = nativeExchange()): void {
  let target = path.resolve(dir);
  if (fs.existsSync(target)) {
    target = fs.realpathSync(target);
    if (!fs.statSync(target).isDirectory()) throw new CompileFolderError(`${dir} is a file, not a folder`);
    const ownership = folderOwnership(target, true);
    if (!ownership.owned) throw new CompileFolderError(`${dir} ${ownership.why}; compile into a new or empty folder, or one loraflow compiled into before`);
    const busy = liveWriters(target);
    if (busy.length > 0) throw new CompileFolderError(`${dir} is being written by another loraflow (${path.relative(target, busy[0]!)}); try again when it has finished`);
  }
  recoverLeftovers(target);
  fs.mkdirSync(path.dirname(target), { recursive: true });
  const staging = tempName(target);
  fs.mkdirSync(staging, { mode: 0o755 });
  try {
    // The staging folder is this compile's alone: its files need no staging of their own.
    for (const [name, content] of Object.entries(files)) writeNewFile(path.join(staging, name), content);
    makePlanLinks(target, links, staging);
    if (fs.existsSync(target)) {
      for (const e of fs.readdirSync(target)) {
        if ((COMPILE_FILES as readonly string[]).includes(e) || LINK_FOLDERS.includes(e) || leftoverOf(target, e) || e in files) continue;
        const from = path.join(target, e);
        if (fs.lstatSync(from).isFile()) fs.linkSync(from, path.join(staging, e));
        else linkTree(from, path.join(staging, e));
      }
    }
    syncFolder(staging);
  } catch (e) {
    fs.rmSync(staging, { recursive: true, force: true });
    throw e;
  }
  const old = swapIn(staging, target, exchange);
  if (old) removeTree(old);
}
