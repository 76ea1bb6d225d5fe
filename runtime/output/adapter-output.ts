import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileError, RunError } from "../errors.js";
import { linkTree, recoverLeftovers, removeTree, swapIn, syncFolder, writeFileDurably, writeNewFile, type Exchange, nativeExchange } from "./atomic.js";
import { adapterFolderOwnership, ADAPTER_FILES, CHECKPOINT_EXTRA_FILES, folderOwnership, leftoverOf, leftoversOf, tempName } from "./owned.js";

/** An adapter folder's two files, encoded (weights checked finite) and ready to write; a checkpoint's two more. */
export interface AdapterFiles {
  config: string;
  weights: Uint8Array;
  optimizer?: Uint8Array;
  trainerState?: string;
}

function isDanglingLink(p: string): boolean {
  try {
    return fs.lstatSync(p).isSymbolicLink();
  } catch {
    return false;
  }
}

/**
 * Writes an adapter's (or a checkpoint's) files into `dir` and flushes it. `fresh`: the folder is a
 * staging folder made for them, which appears under its name only once complete, so each file is
 * written in place; otherwise each replaces what is there in one rename.
 */
export function writeAdapterFiles(dir: string, files: AdapterFiles, fresh = false): void {
  const write = fresh ? writeNewFile : writeFileDurably;
  write(path.join(dir, ADAPTER_FILES[0]), files.config);
  write(path.join(dir, ADAPTER_FILES[1]), files.weights);
  if (files.optimizer !== undefined) write(path.join(dir, CHECKPOINT_EXTRA_FILES[0]), files.optimizer);
  if (files.trainerState !== undefined) write(path.join(dir, CHECKPOINT_EXTRA_FILES[1]), files.trainerState);
  syncFolder(dir);
}

/** Which checkpoints a resumed run's out folder must already hold (steps), and which it may. */
export interface Adoption {
  required: number[];
  allowed: (step: number) => boolean;
}

/** This out folder's staging folders left by runs that stopped (or by this process), newest first. */
function stagingLeftovers(target: string): string[] {
  return leftoversOf(target)
    .filter((l) => l.kind === "tmp" && (l.abandoned || l.mine))
    .map((l) => l.path)
    .filter((p) => fs.statSync(p).isDirectory())
    .sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs);
}

/**
 * Where one adapter of a run goes, and the only way the run writes there. Before training,
 * `prepare` refuses an out folder loraflow did not write (naming it and what it holds), puts
 * right what a stopped run left beside it, and makes the run's staging folder beside it, so an
 * unwritable place fails before any work. Checkpoints are written into the staging folder, each
 * appearing complete under its name in one rename; `finish` adds the adapter's files and swaps
 * the staging folder in for the out folder in one step. Until then the out folder keeps the
 * previous run's adapter and checkpoints, whole; after, it holds this run's, whole.
 */
export class AdapterOutput {
  private resolved: string;
  private staging: string | undefined;
  /** The first of the out folder's parents that prepare created, if any: abandon removes it again. */
  private created: string | undefined;

  constructor(
    readonly adapter: string,
    out: string,
    private readonly exchange: Exchange | undefined = nativeExchange(),
  ) {
    this.resolved = path.resolve(out);
  }

  /** Where the adapter goes: `out`, or where `out` links to once prepare has looked. */
  get target(): string {
    return this.resolved;
  }

  /**
   * Checks and readies the out folder; returns what it found and put right, for the user. With
   * `adopt` (a resumed run), the checkpoints of the stopped run's staging folder are kept: that
   * folder becomes this run's.
   */
  prepare(options: { adopt?: Adoption } = {}): string[] {
    const refuse = (why: string) =>
      new RunError("outputRefused", `adapter "${this.adapter}": out folder ${this.display()} ${why}`);
    let target = this.target;
    let st: fs.Stats | undefined;
    try {
      st = fs.lstatSync(target);
    } catch {
      st = undefined;
    }
    // A link (the compile makes outputs/NAME for an out folder outside the plan's): write where
    // it points, which need not exist yet.
    if (st?.isSymbolicLink()) {
      const dest = path.resolve(path.dirname(target), fs.readlinkSync(target));
      target = fs.existsSync(dest) ? fs.realpathSync(dest) : dest;
      this.resolved = target;
      st = fs.existsSync(target) ? fs.lstatSync(target) : undefined;
      if (st?.isSymbolicLink() || (!st && isDanglingLink(target))) throw refuse("is a symbolic link to a symbolic link");
    }
    if (st && !st.isDirectory()) throw refuse("is a file, not a folder");
    let adopted: string | undefined;
    let linkFrom: string | undefined;
    if (options.adopt) {
      // The stopped run's checkpoints: in its staging folder, or (stopped after its last swap)
      // in the out folder itself; a folder holding other checkpoints is another run's.
      const fits = (d: string) => {
        const steps = fs.readdirSync(d).flatMap((n) => (/^checkpoint-\d+$/.test(n) ? [Number(n.slice(11))] : []));
        // Its own adapter files may be half written (finish rewrites them): its checkpoints must be whole.
        const whole = steps.every((k) => adapterFolderOwnership(path.join(d, `checkpoint-${k}`), true).owned);
        return options.adopt!.required.every((k) => steps.includes(k)) && steps.every(options.adopt!.allowed) && whole;
      };
      const staged = stagingLeftovers(target).find(fits);
      if (staged !== undefined) {
        // Renamed to this process's name first, so that putting the leftovers right spares it;
        // what the stopped run was writing inside it when it stopped goes.
        adopted = tempName(target);
        fs.renameSync(staged, adopted);
        for (const name of fs.readdirSync(adopted)) {
          const l = leftoverOf(adopted, name);
          if (l !== undefined && !l.mine) fs.rmSync(path.join(adopted, name), { recursive: true, force: true });
        }
      } else if (options.adopt.required.length > 0 && st?.isDirectory() && fits(target)) linkFrom = target;
    }
    const notes = recoverLeftovers(target);
    if (st || fs.existsSync(target)) {
      const ownership = adapterFolderOwnership(target);
      if (!ownership.owned) throw refuse(`${ownership.why}; loraflow replaces only adapter folders it wrote: choose another out, or move what is there`);
    }
    try {
      this.created = fs.mkdirSync(path.dirname(target), { recursive: true });
      if (adopted !== undefined) {
        this.staging = adopted;
      } else {
        const staging = tempName(target);
        fs.mkdirSync(staging, { mode: 0o755 });
        this.staging = staging;
        // The out folder stays as it is until the swap: its checkpoints join as links.
        if (linkFrom !== undefined) {
          for (const n of fs.readdirSync(linkFrom)) if (/^checkpoint-\d+$/.test(n)) linkTree(path.join(linkFrom, n), path.join(staging, n));
        }
      }
    } catch (e) {
      throw fileError("outputRefused", path.dirname(target), `adapter "${this.adapter}": cannot write beside out folder ${this.display()}`, e);
    }
    return notes;
  }

  /** Writes checkpoint-STEP into the staging folder, complete or not at all; returns its path. */
  writeCheckpoint(step: number, files: AdapterFiles): string {
    const staging = this.requireStaging();
    const dir = path.join(staging, `checkpoint-${step}`);
    const temp = tempName(dir);
    fs.mkdirSync(temp, { mode: 0o755 });
    try {
      writeAdapterFiles(temp, files, true);
      // A resumed run retraces the steps after its checkpoint: what it writes again replaces the first writing.
      if (fs.existsSync(dir)) removeTree(dir);
      fs.renameSync(temp, dir);
    } catch (e) {
      fs.rmSync(temp, { recursive: true, force: true });
      throw e;
    }
    syncFolder(staging);
    return dir;
  }

  /**
   * Writes the adapter and puts it (with this run's checkpoints) at the out folder in one step.
   * When that fails, the weights are written to a fallback folder the error names.
   */
  finish(files: AdapterFiles): void {
    const staging = this.requireStaging();
    let old: string | undefined;
    try {
      writeAdapterFiles(staging, files);
      old = swapIn(staging, this.target, this.exchange);
      this.staging = undefined;
    } catch (e) {
      const rescued = this.rescue(files);
      const why = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
      throw new RunError(
        "outputFailed",
        `adapter "${this.adapter}": cannot write ${this.display()} (${why}); ` +
          (rescued ? `the trained weights are in ${rescued}` : "the trained weights could not be written anywhere"),
      );
    }
    // The previous version, now under the staging name: removed only if it is still all ours.
    if (old) {
      const ownership = folderOwnership(old);
      if (ownership.owned) removeTree(old);
    }
  }

  /** After a failed run: the staging folder is kept if it holds checkpoints (returned), else removed. */
  abandon(): string | undefined {
    const staging = this.staging;
    this.staging = undefined;
    if (!staging || !fs.existsSync(staging)) return undefined;
    if (fs.readdirSync(staging).some((n) => n.startsWith("checkpoint-"))) return staging;
    fs.rmSync(staging, { recursive: true, force: true });
    // Parents made for this run go too, if nothing else went into them meanwhile.
    for (let dir = path.dirname(this.target); this.created && dir.startsWith(this.created); dir = path.dirname(dir)) {
      try {
        fs.rmdirSync(dir);
      } catch {
        break;
      }
    }
    return undefined;
  }

  /** The staging folder when it took the files, else a fresh folder in the temp directory. */
  private rescue(files: AdapterFiles): string | undefined {
    for (const make of [() => this.staging, () => fs.mkdtempSync(path.join(os.tmpdir(), `loraflow-rescued-${this.adapter}-`))]) {
      try {
        const dir = make();
        if (!dir || !fs.existsSync(dir)) continue;
        writeAdapterFiles(dir, files);
        return dir;
      } catch {
        // try the next place
      }
    }
    return undefined;
  }

  private requireStaging(): string {
    if (!this.staging) throw new Error(`adapter "${this.adapter}": its output was not prepared`);
    return this.staging;
  }

  private display(): string {
    return path.relative(process.cwd(), this.target) || ".";
  }
}
