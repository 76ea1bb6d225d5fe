import { readRegularFile } from "../../compiler/index.js";
import { describeValue, excerpt, jsonSyntaxReason } from "../../dsl/index.js";
import { fileError, RunError } from "../errors.js";

/** One line of a JSONL file, parsed by a format: its value and its 1-based line number. */
export interface JsonlRecord<T> {
  line: number;
  value: T;
}

export interface JsonlRead<T> {
  records: JsonlRecord<T>[];
  /** Lines left out with `skip_bad_lines true`: how many, and the first few as `file:line: why`. */
  skipped: number;
  skippedExamples: string[];
}

/** Past this many problems a file is reported as what it is: not this format. */
const MAX_PROBLEMS = 10;

/**
 * Reads a JSONL file whose lines are objects, each turned into a record by `parse` (which says
 * what is wrong with a line as a string). Blank lines are skipped. Every problem is reported with
 * its `file:line`, and nothing is trained on a file that has one, unless `skipBadLines`, which
 * skips and counts them instead. A line that is not JSON is quoted by a short, escaped excerpt,
 * and only the first: a file that is not JSONL at all is not echoed.
 */
export function readJsonl<T>(file: string, formatName: string, shape: string, parse: (row: Record<string, unknown>) => T | string, skipBadLines = false): JsonlRead<T> {
  let text: string;
  try {
    text = readRegularFile(file).toString("utf8");
  } catch (e) {
    throw fileError("dataInvalid", file, "cannot be read", e);
  }
  const records: JsonlRecord<T>[] = [];
  const problems: string[] = [];
  let skipped = 0;
  let quoted = false;
  const problem = (message: string) => {
    if (skipBadLines) {
      if (skipped < 3) problems.push(message);
      skipped++;
    } else problems.push(message);
  };
  const lines = text.split("\n");
  for (let i = 0; i < lines.length && (skipBadLines || problems.length < MAX_PROBLEMS); i++) {
    const line = lines[i]!;
    if (line.trim() === "") continue;
    const where = `${file}:${i + 1}`;
    let row: unknown;
    try {
      row = JSON.parse(line);
    } catch (e) {
      problem(`${where}: not valid JSON (${jsonSyntaxReason(e)})${quoted ? "" : `: \`${excerpt(line)}\``}`);
      quoted = true;
      continue;
    }
    if (typeof row !== "object" || row === null || Array.isArray(row)) {
      problem(`${where}: a line is a JSON object ${shape}, not ${describeValue(row)}`);
      continue;
    }
    const value = parse(row as Record<string, unknown>);
    if (typeof value === "string") {
      problem(`${where}: ${value}`);
      continue;
    }
    records.push({ line: i + 1, value });
  }
  if (skipBadLines) return { records, skipped, skippedExamples: problems };
  if (problems.length >= MAX_PROBLEMS) problems.push(`${file}: stopped after ${MAX_PROBLEMS} problems; is it a \`${formatName}\` JSONL file?`);
  if (problems.length > 0) throw new RunError("dataInvalid", problems.join("\n"));
  return { records, skipped: 0, skippedExamples: [] };
}
