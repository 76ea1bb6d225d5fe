import * as fs from "node:fs";
import type { Example } from "../data/examples.js";
import { tokensJsonl } from "../data/show.js";
import { RunError } from "../errors.js";
import { writeFileDurably } from "./atomic.js";
import { everyJsonLine } from "./owned.js";

/** Whether every line of a file is a `tokens` example: what `loraflow data` writes, and nothing a user wrote by hand. */
const isTokensFile = (file: string) => everyJsonLine(file, (row) => Array.isArray(row["input_ids"]) && Array.isArray(row["labels"]) && Object.keys(row).length === 2);

/**
 * Writes examples as `tokens` JSONL, atomically. A file already there is replaced only when it
 * holds `tokens` examples and nothing else (an earlier `loraflow data`): a user's own data named by
 * mistake is refused, never overwritten.
 */
export function writeTokensFile(file: string, examples: readonly Example[]): void {
  const st = fs.lstatSync(file, { throwIfNoEntry: false });
  if (st !== undefined) {
    if (!st.isFile()) throw new RunError("outputRefused", `${file} exists and is not a regular file; choose another -o`);
    if (!isTokensFile(file)) throw new RunError("outputRefused", `${file} exists and holds more than \`tokens\` examples (input_ids and labels); loraflow replaces only what it wrote: choose another -o`);
  }
  try {
    writeFileDurably(file, tokensJsonl(examples));
  } catch (e) {
    throw new RunError("outputRefused", `${file} cannot be written (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}
