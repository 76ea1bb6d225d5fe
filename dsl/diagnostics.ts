import type { Span } from "./span.js";

export type Severity = "error" | "warning";

/** One entry of the numbered catalog: the code never changes meaning once released. */
export interface DiagnosticKind {
  code: string;
  severity: Severity;
  /** What the code means, for documentation and `loraflow explain`-style listings. */
  title: string;
}

/**
 * Every diagnostic loraflow can report. LF1xxx: syntax (tokens, blocks, property shapes).
 * LF2xxx: meaning (a job that parses but is inconsistent). LF3xxx: files the job names
 * (model folders, weights, data, adapters). LF4xxx: planning (partition and schedule).
 * LF5xxx: plan files read back from disk. LF6xxx: what `run` and `eval` read and write (data,
 * weights, adapters, output folders) and how training ended.
 */
export const Diagnostics = {
  unexpectedCharacter: { code: "LF1001", severity: "error", title: "a character that starts no token" },
  unterminatedString: { code: "LF1002", severity: "error", title: "a string without its closing quote" },
  syntaxError: { code: "LF1003", severity: "error", title: "tokens out of place (braces, block headers)" },
  unknownBlock: { code: "LF1004", severity: "error", title: "a top-level block of an unknown kind" },
  unknownProperty: { code: "LF1005", severity: "error", title: "a property the block does not have" },
  badValue: { code: "LF1006", severity: "error", title: "a value of the wrong kind for its property" },
  missingValue: { code: "LF1007", severity: "error", title: "a property without its value" },
  unknownChoice: { code: "LF1008", severity: "error", title: "a word outside the property's choices" },
  duplicateProperty: { code: "LF1009", severity: "error", title: "a property given twice in one block" },
  unexpectedBlock: { code: "LF1010", severity: "error", title: "a { } block after a property that takes none" },
  missingBlockName: { code: "LF1011", severity: "error", title: "a block that needs a name has none" },

  duplicateName: { code: "LF2001", severity: "error", title: "two blocks of one kind with the same name" },
  blockCount: { code: "LF2002", severity: "error", title: "a block missing or repeated (one model, at least one adapter, at most one cluster and plan)" },
  rankBounds: { code: "LF2003", severity: "error", title: "a rank below 1 or above min(in, out) of a target" },
  conflictingProperties: { code: "LF2004", severity: "error", title: "properties that exclude each other" },
  missingProperty: { code: "LF2005", severity: "error", title: "a required property is missing" },
  unknownTarget: { code: "LF2006", severity: "error", title: "a target module the model does not have" },
  microBatchDivides: { code: "LF2007", severity: "error", title: "micro_batch does not divide batch" },
  headsDivisible: { code: "LF2008", severity: "error", title: "heads not divisible by kv_heads, or hidden by heads" },
  outOfRange: { code: "LF2009", severity: "error", title: "a number outside its allowed range" },
  unknownDevice: { code: "LF2010", severity: "error", title: "a gpu profile that is not built in, without memory and tflops" },
  tooManyStages: { code: "LF2011", severity: "error", title: "more pipeline stages than devices or layers" },
  seqLenTooLong: { code: "LF2012", severity: "error", title: "seq_len above the model's max_seq" },
  unsupportedArch: { code: "LF2013", severity: "error", title: "an architecture or model feature loraflow does not implement" },
  optimizerProperty: { code: "LF2014", severity: "error", title: "an optimizer setting the chosen optimizer does not use" },
  sharedOutput: { code: "LF2015", severity: "error", title: "two adapters writing to the same out folder" },
  badName: { code: "LF2017", severity: "error", title: "an adapter name that cannot name a folder" },
  fuseIgnored: { code: "LF2018", severity: "warning", title: "`fuse` under a schedule that does not interleave: it has no effect" },

  modelFolderMissing: { code: "LF3001", severity: "error", title: "the model's `from` folder does not exist" },
  configUnreadable: { code: "LF3002", severity: "error", title: "config.json missing or not valid JSON" },
  configInvalid: { code: "LF3003", severity: "error", title: "config.json lacks a field or has one of the wrong type" },
  weightsUnreadable: { code: "LF3004", severity: "error", title: "a safetensors file or index that cannot be read" },
  weightsMismatch: { code: "LF3005", severity: "error", title: "weights missing or shaped unlike config.json" },
  inlineConflictsConfig: { code: "LF3006", severity: "error", title: "an inline architecture value contradicts config.json" },
  noWeights: { code: "LF3007", severity: "warning", title: "a `from` folder without weights: the plan compiles, `run` will refuse it" },
  dataMissing: { code: "LF3008", severity: "error", title: "an adapter's data file does not exist or is empty" },
  initInvalid: { code: "LF3009", severity: "error", title: "an `init` adapter folder missing or unlike the adapter it starts" },
  noTokenizer: { code: "LF3010", severity: "warning", title: "text data without a tokenizer.json to read it: the plan compiles, `run` will refuse it" },
  noData: { code: "LF3011", severity: "warning", title: "an adapter with `steps` but no `data`: the plan compiles, `run` will refuse it" },

  planInvalid: { code: "LF4001", severity: "error", title: "the verifier found a broken plan (an internal error: please report it)" },
  doesNotFit: { code: "LF4002", severity: "error", title: "a stage whose peak memory exceeds its device's" },

  planUnreadable: { code: "LF5001", severity: "error", title: "a plan file that is not valid JSON" },
  planSchema: { code: "LF5002", severity: "error", title: "a plan file that does not match the plan schema" },
  planVersion: { code: "LF5003", severity: "error", title: "a plan file of another format version" },

  dataInvalid: { code: "LF6001", severity: "error", title: "a data file that cannot be trained on: a bad line, no examples, no counted token" },
  weightsInvalid: { code: "LF6002", severity: "error", title: "base weights unreadable, unlike the plan, or not finite" },
  initAdapterInvalid: { code: "LF6003", severity: "error", title: "an `init` adapter whose tensors are missing, misshapen or not finite" },
  outputRefused: { code: "LF6004", severity: "error", title: "an out folder loraflow may not write: files it did not write, an input inside it, not writable" },
  outputFailed: { code: "LF6005", severity: "error", title: "an adapter that could not be written after training (the weights are saved elsewhere, named)" },
  diverged: { code: "LF6006", severity: "error", title: "a loss or gradient that is not finite: training stops, nothing is written" },
  tooLarge: { code: "LF6007", severity: "error", title: "a run that needs more memory than the machine has" },
  engineRefused: { code: "LF6008", severity: "error", title: "the engine refused what it was given, or found its stages waiting on each other" },
  noTokens: { code: "LF6009", severity: "error", title: "nothing to evaluate: no counted token" },
  resumeInvalid: { code: "LF6013", severity: "error", title: "nothing to resume, or a checkpoint of another plan, step limit or data" },
  tokenizerInvalid: { code: "LF6012", severity: "error", title: "a tokenizer folder missing, unreadable or unlike the model" },
  backendUnavailable: { code: "LF6011", severity: "error", title: "a backend that cannot run here: no GPU driver, fewer GPUs than the plan uses, or no cuBLASLt or NCCL" },
  examplesTruncated: { code: "LF6101", severity: "warning", title: "examples longer than seq_len, cut to fit" },
  leftoverRemoved: { code: "LF6102", severity: "warning", title: "a folder left by a run that did not finish, removed" },
  examplesDropped: { code: "LF6103", severity: "warning", title: "examples with no counted token (after truncation), left out" },
  linesSkipped: { code: "LF6104", severity: "warning", title: "bad data lines skipped (`skip_bad_lines true`)" },
} as const satisfies Record<string, DiagnosticKind>;

export type DiagnosticName = keyof typeof Diagnostics;

export interface Diagnostic {
  code: string;
  severity: Severity;
  message: string;
  /** Where in the job file; absent only for diagnostics about files other than the job (plan files). */
  span?: Span;
  /** The file the span refers to. */
  file?: string;
}

export function diagnostic(kind: DiagnosticName, message: string, span?: Span, file?: string): Diagnostic {
  const { code, severity } = Diagnostics[kind];
  const d: Diagnostic = { code, severity, message };
  if (span !== undefined) d.span = span;
  if (file !== undefined) d.file = file;
  return d;
}

export function hasErrors(diagnostics: readonly Diagnostic[]): boolean {
  return diagnostics.some((d) => d.severity === "error");
}

/**
 * `job.lf:12:7: error LF2003: message`, then the source line and a caret under the span.
 * `source` is the text the span points into; without it only the first line is printed.
 */
export function formatDiagnostic(d: Diagnostic, source?: string): string {
  const file = d.file ?? "<input>";
  const where = d.span ? `${file}:${d.span.line}:${d.span.col}` : file;
  const head = `${where}: ${d.severity} ${d.code}: ${d.message}`;
  if (!d.span || source === undefined) return head;
  const lineStart = d.span.start - (d.span.col - 1);
  let lineEnd = source.indexOf("\n", lineStart);
  if (lineEnd < 0) lineEnd = source.length;
  const text = source.slice(lineStart, lineEnd).replace(/\r$/, "");
  const width = Math.max(1, Math.min(d.span.end, lineEnd) - d.span.start);
  // Tabs stay tabs under the caret so it lines up whatever the terminal's tab width.
  const pad = text.slice(0, d.span.col - 1).replace(/[^\t]/g, " ");
  const gutter = String(d.span.line).length;
  return [
    head,
    `${" ".repeat(gutter)} |`,
    `${d.span.line} | ${text}`,
    `${" ".repeat(gutter)} | ${pad}${"^".repeat(width)}`,
  ].join("\n");
}

export function formatDiagnostics(diagnostics: readonly Diagnostic[], source?: string): string {
  return diagnostics.map((d) => formatDiagnostic(d, source)).join("\n");
}
