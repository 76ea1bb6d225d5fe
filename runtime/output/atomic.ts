import * as fs from "node:fs";
import * as path from "node:path";
import { loadNative } from "../native.js";
import { leftoversOf, tempName } from "./owned.js";

/**
 * The steps every write of loraflow is made of, so that a kill at any instant leaves each file
 * and folder it replaces either as it was or complete: content goes to a staging name beside
 * its target, is flushed to disk, and takes the target's name in one rename (a file, or a folder
 * that did not exist) or one exchange (a folder that did). Staging names carry the writer's pid,
 * so the next run can tell a dead writer's leftovers from a live one's.
 */

/** Writes a new file (refusing one that exists) and flushes it to disk; removed again on failure. */
export function writeNewFile(file: string, bytes: string | Uint8Array): void {
  const fd = fs.openSync(file, "wx", 0o644);
  try {
    fs.writeFileSync(fd, bytes);
    fs.fsyncSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(file, { force: true });
    throw e;
  }
  fs.closeSync(fd);
}

/** Writes `bytes` as `file`: staged, flushed, renamed over it. */
export function writeFileDurably(file: string, bytes: string | Uint8Array): void {
  const temp = tempName(file);
  writeNewFile(temp, bytes);
  fs.renameSync(temp, file);
}

/**
 * Removes a tree loraflow wrote so that a kill part-way leaves no partial folder under an
 * adapter's or checkpoint's name: each such folder is renamed to a staging name (one step)
 * before its files go.
 */
export function removeTree(dir: string): void {
  if (!fs.existsSync(dir)) return;
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      if (!e.isDirectory() || e.isSymbolicLink()) continue;
      let full = path.join(d, e.name);
      if (/^checkpoint-\d+$/.test(e.name) || fs.existsSync(path.join(full, "adapter_config.json"))) {
        const hidden = tempName(full);
        fs.renameSync(full, hidden);
        full = hidden;
      }
      walk(full);
    }
  };
  walk(dir);
  fs.rmSync(dir, { recursive: true, force: true });
}

/** Flushes a folder's entries (the renames into it) to disk. */
export function syncFolder(dir: string): void {
  const fd = fs.openSync(dir, "r");
  try {
    fs.fsyncSync(fd);
  } catch {
    // Some file systems cannot fsync a folder; the rename itself is still atomic.
  } finally {
    fs.closeSync(fd);
  }
}

export type Exchange = (a: string, b: string) => void;

/** The kernel's atomic exchange of two paths (renameat2), where the engine is built. */
export function nativeExchange(): Exchange | undefined {
  try {
    return loadNative().exchangePaths;
  } catch {
    return undefined;
  }
}

/**
 * Puts the complete folder `staging` at `target`. When a target exists it is exchanged with the
 * staging folder in one step, and the old version is then under the staging name; where the file
 * system cannot exchange, the old version is renamed aside first (recoverLeftovers undoes a kill
 * between the two renames). Returns the path of the old version to remove, if there was one.
 */
export function swapIn(staging: string, target: string, exchange: Exchange | undefined = nativeExchange()): string | undefined {
  if (!fs.existsSync(target)) {
    fs.renameSync(staging, target);
    syncFolder(path.dirname(target));
    return undefined;
  }
  if (exchange) {
    try {
      exchange(staging, target);
      syncFolder(path.dirname(target));
      return staging;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== "EINVAL" && code !== "ENOSYS" && code !== "EOPNOTSUPP") throw e;
    }
  }
  const old = tempName(target, "old");
  fs.renameSync(target, old);
  try {
    fs.renameSync(staging, target);
  } catch (e) {
    fs.renameSync(old, target);
    throw e;
  }
  syncFolder(path.dirname(target));
  return old;
}

/**
 * Finds what dead writers left beside `target` and puts things right: an old version renamed
 * aside whose replacement never arrived is put back; anything else (staging folders, old
 * versions already replaced) is removed. Returns what it did, for the user.
 */
export function recoverLeftovers(target: string): string[] {
  const done: string[] = [];
  const dead = leftoversOf(target).filter((l) => l.abandoned);
  // Put a lost target back before removing anything.
  for (const l of dead) {
    if (l.kind === "old" && !fs.existsSync(target)) {
      fs.renameSync(l.path, target);
      done.push(`put back ${target}, which a run that was stopped had moved aside`);
    }
  }
  for (const { path: full } of dead) {
    if (!fs.existsSync(full)) continue;
    removeTree(full);
    done.push(`removed ${full}, left by a run that was stopped`);
  }
  return done;
}

/** Every file below `src` again below `dst`, as hard links (copies where the file system has none). */
export function linkTree(src: string, dst: string): void {
  fs.mkdirSync(dst, { mode: fs.statSync(src).mode & 0o7777 });
  for (const e of fs.readdirSync(src, { withFileTypes: true })) {
    const from = path.join(src, e.name);
    const to = path.join(dst, e.name);
    if (e.isSymbolicLink()) fs.symlinkSync(fs.readlinkSync(from), to);
    else if (e.isDirectory()) linkTree(from, to);
    else {
      try {
        fs.linkSync(from, to);
      } catch {
        fs.copyFileSync(from, to);
      }
    }
  }
}
