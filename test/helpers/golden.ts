import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { expect } from "vitest";

export const GOLDEN_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "golden");

/**
 * Compares `actual` with the golden file test/golden/<name>; `UPDATE_SNAPSHOTS=1` rewrites it.
 * Golden files are reviewed as diffs in commits, so they are plain text.
 */
export function expectGolden(name: string, actual: string): void {
  const file = path.join(GOLDEN_DIR, name);
  const text = actual.endsWith("\n") ? actual : actual + "\n";
  if (process.env["UPDATE_SNAPSHOTS"] === "1") {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, text);
    return;
  }
  if (!fs.existsSync(file)) throw new Error(`golden file ${name} is missing; run with UPDATE_SNAPSHOTS=1 and review it`);
  expect(text, `golden file ${name} (UPDATE_SNAPSHOTS=1 to accept)`).toBe(fs.readFileSync(file, "utf8"));
}
