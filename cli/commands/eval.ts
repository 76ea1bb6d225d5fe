import * as fs from "node:fs";
import * as path from "node:path";
import { compile, Diagnostics, formatDiagnostics } from "../../compiler/index.js";
import { adapterSettings } from "../adapter-settings.js";
import { print, printError } from "../output.js";
import { RunError } from "../../runtime/errors.js";
import { evaluatePlan } from "../../runtime/eval.js";

export interface EvalFlags {
  model: string;
  adapter?: string;
  data: string;
  seqLen?: number;
  json?: boolean;
}

/**
 * `loraflow eval`: the mean cross-entropy of a Hugging Face model (with a PEFT adapter) on a
 * `tokens` file. The model and adapter are checked by the compiler, like a job's.
 */
export function evalCommand(flags: EvalFlags): number {
  try {
    const seq = flags.seqLen ?? 1024;
    const source = [
      `model eval { from ${JSON.stringify(path.resolve(flags.model))} }`,
      `adapter eval { data ${JSON.stringify(path.resolve(flags.data))} format tokens pack true steps 1 batch 1 seq_len ${seq} ${flags.adapter ? adapterSettings(flags.adapter) : ""} }`,
    ].join("\n");
    // The paths are the user's own flags, made absolute: planned from the file system's root,
    // every one of them is inside the plan's folder, and no link is needed.
    const root = path.parse(process.cwd()).root;
    let result = compile(source, { fileName: "<eval>", planDir: root });
    if (!result.plan && flags.seqLen === undefined && result.diagnostics.some((d) => d.code === "LF2012")) {
      // The default length is above this model's max_seq: use max_seq.
      const max = /max_seq (\d+)/.exec(result.diagnostics.find((d) => d.code === "LF2012")!.message)?.[1];
      result = compile(source.replace(`seq_len ${seq}`, `seq_len ${max}`), { fileName: "<eval>", planDir: root });
    }
    if (!result.plan) {
      const problems = result.diagnostics.filter((d) => d.severity === "error").map((d) => d.message.replace(/^adapter "eval": /, ""));
      printError(`loraflow eval: ${problems.join("\nloraflow eval: ")}\n`);
      return 1;
    }
    for (const w of result.diagnostics.filter((d) => d.severity === "warning")) printError(formatDiagnostics([w]) + "\n");
    const r = evaluatePlan(result.plan, root);
    if (r.truncated > 0) printError(`loraflow eval: warning LF6101: ${r.truncated} examples were longer than ${result.plan.adapters[0]!.seqLen} tokens and were cut (--seq-len)\n`);
    const out = { loss: Number(r.loss.toFixed(6)), tokens: r.tokens };
    print(flags.json ? JSON.stringify(out) + "\n" : `loss ${out.loss} over ${out.tokens} tokens\n`);
    return 0;
  } catch (e) {
    if (e instanceof RunError) {
      printError(`loraflow eval: error ${e.code}: ${e.message}\n`);
      return 1;
    }
    if (e instanceof Error && /^modelGrad:/.test(e.message)) {
      printError(`loraflow eval: error ${Diagnostics.engineRefused.code}: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
}
