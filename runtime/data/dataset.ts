import { RunError } from "../errors.js";
import { permutation, randomFor } from "../random.js";
import { countedTokens, tokenizeRow, type Example } from "./examples.js";
import { formatParser, type FormatName } from "./formats.js";
import { readJsonl } from "./jsonl.js";
import type { TextTokenizer } from "./tokenizer.js";

/** An example and the data line it came from. */
export interface LinedExample extends Example {
  line: number;
}

export interface DataSettings {
  file: string;
  format: FormatName;
  seqLen: number;
  vocab: number;
  /** Needed by every format but `tokens`. */
  tokenizer: TextTokenizer | null;
  skipBadLines: boolean;
  /** The fraction of examples held out for evaluation (0: none). */
  evalSplit: number;
  seed: number;
}

/** What a data file became: the figures `loraflow data` prints, per adapter. */
export interface DataStats {
  /** Examples kept, training and held out. */
  examples: number;
  tokens: number;
  counted: number;
  /** Examples cut to seq_len (their start kept). */
  truncated: number;
  /** Examples left with no counted token, left out. */
  dropped: number;
  /** Bad lines left out (`skip_bad_lines true`). */
  skipped: number;
  /** Examples held out for evaluation. */
  eval: number;
}

export interface Dataset {
  train: LinedExample[];
  eval: LinedExample[];
  stats: DataStats;
  /** The first few skipped lines, as `file:line: why`. */
  skippedExamples: string[];
}

/** Held out: ceil(split x n), as Hugging Face datasets' train_test_split, and at least one left to train on. */
export function heldOutCount(split: number, n: number): number {
  if (split <= 0 || n < 2) return 0;
  return Math.min(n - 1, Math.ceil(split * n));
}

/**
 * A data file read, templated, tokenized and truncated as training sees it, before packing.
 * Truncation keeps an example's start; an example left with nothing to count is dropped. Every
 * problem names `file:line`; with `skipBadLines` bad lines are skipped and counted instead.
 * The held-out split is drawn from `seed`, the same on every machine.
 */
export function readDataset(s: DataSettings): Dataset {
  if (s.format !== "tokens" && s.tokenizer !== null && s.tokenizer.size > s.vocab) {
    throw new RunError("tokenizerInvalid", `${s.tokenizer.folder}: the tokenizer has ${s.tokenizer.size} tokens, more than the model's vocabulary of ${s.vocab}`);
  }
  const { parse, shape } = formatParser(s.format, s.vocab);
  // A line that does not template or tokenize is a bad line like one that does not parse: one
  // place reports it (file:line) or skips and counts it. Every id is in the vocabulary: tokens
  // lines are checked as they parse, a tokenizer no larger than the vocabulary above.
  const read = readJsonl(s.file, s.format, shape, (row) => {
    const value = parse(row);
    return typeof value === "string" ? value : tokenizeRow(value, s.tokenizer);
  }, s.skipBadLines);
  const kept: LinedExample[] = [];
  const stats: DataStats = { examples: 0, tokens: 0, counted: 0, truncated: 0, dropped: 0, skipped: read.skipped, eval: 0 };
  for (const { line, value: e } of read.records) {
    let example: LinedExample = { ...e, line };
    if (e.inputIds.length > s.seqLen) {
      example = { inputIds: e.inputIds.slice(0, s.seqLen), labels: e.labels.slice(0, s.seqLen), line };
      stats.truncated++;
    }
    const counted = countedTokens(example);
    if (counted === 0) {
      stats.dropped++;
      continue;
    }
    stats.tokens += example.inputIds.length;
    stats.counted += counted;
    kept.push(example);
  }
  if (kept.length === 0) {
    const why = [
      read.records.length === 0 ? "no examples" : `none of its ${read.records.length} examples has a counted token`,
      stats.dropped > 0 ? `${stats.dropped} left nothing to train on${stats.truncated > 0 ? " once cut to seq_len " + s.seqLen : ""}` : "",
      stats.skipped > 0 ? `${stats.skipped} bad line${stats.skipped === 1 ? "" : "s"} skipped` : "",
    ].filter((x) => x !== "");
    throw new RunError("dataInvalid", `${s.file}: ${why.join("; ")}`);
  }
  stats.examples = kept.length;
  const held = heldOutCount(s.evalSplit, kept.length);
  const skippedExamples = read.skippedExamples;
  if (held === 0) return { train: kept, eval: [], stats, skippedExamples };
  const isHeld = new Uint8Array(kept.length);
  const perm = permutation(kept.length, randomFor(s.seed, 0xe7a1));
  for (let i = 0; i < held; i++) isHeld[perm[i]!] = 1;
  stats.eval = held;
  return { train: kept.filter((_, i) => !isHeld[i]), eval: kept.filter((_, i) => isHeld[i]), stats, skippedExamples };
}
