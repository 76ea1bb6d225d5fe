import { openRegularFile } from "../../compiler/index.js";
import * as fs from "node:fs";
import { describeValue, excerpt, jsonSyntaxReason } from "../../dsl/index.js";
import { fileError, RunError } from "../errors.js";

/** One training example: token ids and the labels the loss reads (-100: not counted). */
export interface Example {
  inputIds: number[];
  labels: number[];
}

function intArray(value: unknown, vocab: number, allowMasked: boolean): number[] | string {
  if (!Array.isArray(value)) return `is ${describeValue(value)}, not an array`;
  for (let i = 0; i < value.length; i++) {
    const v = value[i];
    if (!Number.isInteger(v)) return `has ${describeValue(v)} at index ${i}, not a whole number`;
    if (allowMasked && v === -100) continue;
    if ((v as number) < 0 || (v as number) >= vocab) return `has ${v} at index ${i}, outside the vocabulary [0, ${vocab})`;
  }
  return value as number[];
}

/** Past this many problems a file is reported as what it is: not this format. */
const MAX_PROBLEMS = 10;

/**
 * The `tokens` format: JSONL lines `{"input_ids": [...], "labels": [...]}`, labels optional
 * (default: the input ids), -100 masking a position. Blank lines are skipped. Every problem is
 * reported with its file and line, and nothing is trained on a file that has one. A line that is
 * not JSON is quoted by a short, escaped excerpt, and only the first: a file that is not JSONL
 * at all is not echoed.
 */
export function readTokens(file: string, vocab: number): Example[] {
  let text: string;
  try {
    const fd = openRegularFile(file);
    try {
      text = fs.readFileSync(fd, "utf8");
    } finally {
      fs.closeSync(fd);
    }
  } catch (e) {
    throw fileError("dataInvalid", file, "cannot be read", e);
  }
  const examples: Example[] = [];
  const problems: string[] = [];
  let quoted = false;
  const lines = text.split("\n");
  for (let i = 0; i < lines.length && problems.length < MAX_PROBLEMS; i++) {
    const line = lines[i]!;
    if (line.trim() === "") continue;
    const where = `${file}:${i + 1}`;
    let row: unknown;
    try {
      row = JSON.parse(line);
    } catch (e) {
      problems.push(`${where}: not valid JSON (${jsonSyntaxReason(e)})${quoted ? "" : `: \`${excerpt(line)}\``}`);
      quoted = true;
      continue;
    }
    if (typeof row !== "object" || row === null || Array.isArray(row)) {
      problems.push(`${where}: a line is a JSON object {"input_ids": [...], "labels": [...]}, not ${describeValue(row)}`);
      continue;
    }
    const r = row as Record<string, unknown>;
    if (!("input_ids" in r)) {
      problems.push(`${where}: \`input_ids\` is missing`);
      continue;
    }
    const ids = intArray(r["input_ids"], vocab, false);
    if (typeof ids === "string") {
      problems.push(`${where}: \`input_ids\` ${ids}`);
      continue;
    }
    if (ids.length === 0) {
      problems.push(`${where}: \`input_ids\` is empty`);
      continue;
    }
    let labels = ids;
    if (r["labels"] !== undefined) {
      const l = intArray(r["labels"], vocab, true);
      if (typeof l === "string") {
        problems.push(`${where}: \`labels\` ${l}`);
        continue;
      }
      if (l.length !== ids.length) {
        problems.push(`${where}: \`labels\` has ${l.length} entries, \`input_ids\` ${ids.length}`);
        continue;
      }
      labels = l;
    }
    examples.push({ inputIds: ids, labels });
  }
  if (problems.length >= MAX_PROBLEMS) problems.push(`${file}: stopped after ${MAX_PROBLEMS} problems; is it a \`tokens\` JSONL file?`);
  if (problems.length > 0) throw new RunError("dataInvalid", problems.join("\n"));
  if (examples.length === 0) throw new RunError("dataInvalid", `${file}: no examples`);
  return examples;
}
