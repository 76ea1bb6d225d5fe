import * as fs from "node:fs";
import * as path from "node:path";
import { compile, formatDiagnostics, type CompileRequest, type Plan } from "../../compiler/index.js";
import { makePlanLinks } from "../../runtime/output/compile-folder.js";
import { rng } from "./random.js";

/** Writes `count` lines of `tokens` data: short runs over a small vocabulary, some labels masked. */
export function writeTokenData(file: string, count: number, vocab: number, seed: number): void {
  const next = rng(seed);
  const lines: string[] = [];
  for (let i = 0; i < count; i++) {
    const n = 3 + Math.floor(next() * 10);
    const start = Math.floor(next() * vocab);
    const ids = Array.from({ length: n }, (_, k) => (start + k * (1 + (i % 3))) % vocab);
    const labels = ids.map((id, k) => (k < 2 && i % 2 === 0 ? -100 : id));
    lines.push(JSON.stringify(i % 4 === 0 ? { input_ids: ids } : { input_ids: ids, labels }));
  }
  fs.writeFileSync(file, lines.join("\n") + "\n");
}

/** Compiles a job that must compile, and makes its links in the plan's folder (as `compile` would). */
export function compileOrThrow(source: string, request: CompileRequest): Plan {
  const result = compile(source, request);
  if (!result.plan) throw new Error(formatDiagnostics(result.diagnostics, source));
  if (request.planDir !== undefined) makePlanLinks(path.resolve(request.planDir), result.links ?? []);
  return result.plan;
}
