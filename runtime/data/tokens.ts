import * as fs from "node:fs";
import { RunError } from "../errors.js";

/** One training example: token ids and the labels the loss reads (-100: not counted). */
export interface Example {
  inputIds: number[];
  labels: number[];
}

function intArray(value: unknown, vocab: number, allowMasked: boolean): number[] | string {
  if (!Array.isArray(value)) return "is not an array";
  for (let i = 0; i < value.length; i++) {
    const v = value[i];
    if (!Number.isInteger(v)) return `has ${JSON.stringify(v)} at index ${i}, not a whole number`;
    if (allowMasked && v === -100) continue;
    if ((v as number) < 0 || (v as number) >= vocab) return `has ${v} at index ${i}, outside the vocabulary [0, ${vocab})`;
  }
  return value as number[];
}

/**
 * The `tokens` format: JSONL lines `{"input_ids": [...], "labels": [...]}`, labels optional
 * (default: the input ids), -100 masking a position. Blank lines are skipped. Every problem is
 * reported with its file and line, and nothing is trained on a file that has one.
 */
export function readTokens(file: string, vocab: number): Example[] {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (e) {
    throw new RunError(`${file}: cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  const examples: Example[] = [];
  const problems: string[] = [];
  text.split("\n").forEach((line, i) => {
    if (line.trim() === "" || problems.length >= 10) return;
    const where = `${file}:${i + 1}`;
    let row: unknown;
    try {
      row = JSON.parse(line);
    } catch (e) {
      problems.push(`${where}: not valid JSON (${(e as Error).message})`);
      return;
    }
    if (typeof row !== "object" || row === null || Array.isArray(row)) {
      problems.push(`${where}: a line is a JSON object {"input_ids": [...], "labels": [...]}`);
      return;
    }
    const r = row as Record<string, unknown>;
    if (!("input_ids" in r)) {
      problems.push(`${where}: \`input_ids\` is missing`);
      return;
    }
    const ids = intArray(r["input_ids"], vocab, false);
    if (typeof ids === "string") return void problems.push(`${where}: \`input_ids\` ${ids}`);
    if (ids.length === 0) return void problems.push(`${where}: \`input_ids\` is empty`);
    let labels = ids;
    if (r["labels"] !== undefined) {
      const l = intArray(r["labels"], vocab, true);
      if (typeof l === "string") return void problems.push(`${where}: \`labels\` ${l}`);
      if (l.length !== ids.length) return void problems.push(`${where}: \`labels\` has ${l.length} entries, \`input_ids\` ${ids.length}`);
      labels = l;
    }
    examples.push({ inputIds: ids, labels });
  });
  if (problems.length > 0) throw new RunError(problems.join("\n"));
  if (examples.length === 0) throw new RunError(`${file}: no examples`);
  return examples;
}
