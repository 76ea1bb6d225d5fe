import * as fs from "node:fs";
import * as path from "node:path";
import { compile, formatDiagnostics, hasErrors, type Plan } from "../../compiler/index.js";
import { adapterDataset, planTokenizer } from "../../runtime/data/adapter-data.js";
import type { Dataset } from "../../runtime/data/dataset.js";
import { markedText, TRAINED_CLOSE, TRAINED_OPEN } from "../../runtime/data/show.js";
import type { TextTokenizer } from "../../runtime/data/tokenizer.js";
import { RunError } from "../../runtime/errors.js";
import { writeTokensFile } from "../../runtime/output/tokens-file.js";
import { print, printError } from "../output.js";
import { table } from "../print-summary.js";
import { readTextOrReport } from "../read-text.js";
import { loadPlanDir } from "./run.js";

export interface DataFlags {
  adapter?: string;
  out?: string;
  show?: number;
}

/**
 * The plan of a job, planned in memory from the file system's root: every path the job names
 * is then inside the plan's folder, no link is made and nothing is written.
 */
function planOf(target: string): { plan: Plan; dir: string } | undefined {
  if (fs.existsSync(target) && fs.statSync(target).isDirectory()) {
    const plan = loadPlanDir(target);
    return plan === undefined ? undefined : { plan, dir: target };
  }
  const source = readTextOrReport(target);
  if (source === undefined) return undefined;
  const root = path.parse(path.resolve(target)).root;
  const result = compile(source, { fileName: target, baseDir: path.dirname(path.resolve(target)), planDir: root });
  if (result.diagnostics.length > 0) printError(formatDiagnostics(result.diagnostics, source) + "\n");
  if (hasErrors(result.diagnostics) || !result.plan) return undefined;
  return { plan: result.plan, dir: root };
}

/** Where each adapter's examples go: `-o` itself for one adapter, `-o/NAME.jsonl` for several. */
function outFile(out: string, name: string, several: boolean): string {
  return several ? path.join(out, `${name}.jsonl`) : out;
}

/**
 * `loraflow data JOB.lf|PLAN_DIR`: each adapter's examples exactly as training sees them (after
 * templating, tokenization and truncation, before packing), a summary per adapter, and with
 * `--show N` the first N decoded with what is trained marked; `-o` writes them as `tokens` JSONL.
 */
export function dataCommand(target: string, flags: DataFlags): number {
  const planned = planOf(target);
  if (!planned) return 1;
  const { plan, dir } = planned;
  const chosen = flags.adapter === undefined ? plan.adapters : plan.adapters.filter((a) => a.name === flags.adapter);
  if (chosen.length === 0) {
    printError(`loraflow data: no adapter "${flags.adapter}"; this job has ${plan.adapters.map((a) => a.name).join(", ")}\n`);
    return 1;
  }
  try {
    const several = chosen.length > 1;
    if (flags.out !== undefined && several) fs.mkdirSync(flags.out, { recursive: true });
    const rows: string[][] = [["adapter", "format", "examples", "tokens", "counted", "truncated", "dropped", "skipped", "held out"]];
    for (const a of chosen) {
      const data: Dataset = adapterDataset(plan, dir, a);
      const s = data.stats;
      rows.push([a.name, a.data.format, String(s.examples), String(s.tokens), String(s.counted), String(s.truncated), String(s.dropped), String(s.skipped), String(s.eval)]);
      for (const skipped of data.skippedExamples) printError(`loraflow data: skipped ${skipped}\n`);
      if (flags.out !== undefined) {
        // All kept examples in file order: read back as `tokens` with the same eval_split and
        // seed, they train exactly as this data does.
        const all = [...data.train, ...data.eval].sort((x, y) => x.line - y.line);
        writeTokensFile(outFile(flags.out, a.name, several), all);
      }
      if (flags.show !== undefined && flags.show > 0) {
        let tokenizer: TextTokenizer | null = null;
        if (a.data.format !== "tokens" || plan.model.tokenizer !== null) {
          try {
            tokenizer = planTokenizer(plan, dir);
          } catch {
            tokenizer = null;
          }
        }
        print(`${a.name}: the first ${Math.min(flags.show, data.train.length)} training examples; ${TRAINED_OPEN}...${TRAINED_CLOSE} is trained, the rest is masked\n`);
        for (const e of data.train.slice(0, flags.show)) print(`--- line ${e.line} (${e.inputIds.length} tokens)\n${markedText(e, tokenizer)}\n`);
      }
    }
    print(table(rows) + "\n");
    if (flags.out !== undefined) print(`wrote ${several ? chosen.map((a) => outFile(flags.out!, a.name, true)).join(", ") : flags.out}\n`);
    return 0;
  } catch (e) {
    if (!(e instanceof RunError)) throw e;
    printError(`loraflow data: error ${e.code}: ${e.message}\n`);
    return 1;
  }
}
