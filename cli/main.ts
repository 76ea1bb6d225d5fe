import * as fs from "node:fs";
import * as path from "node:path";
import { Command, InvalidArgumentError, Option } from "commander";
import { compile, formatDiagnostics, hasErrors, PASS_NAMES, VERSION, type ScheduleName } from "../compiler/index.js";
import { describePlan } from "./print-summary.js";
import { writeFilesAtomically } from "./write-files.js";

function stagesArgument(value: string): number | "auto" {
  if (value === "auto") return "auto";
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError("expected a whole number >= 1 or auto");
  return n;
}

interface CompileFlags {
  out?: string;
  schedule?: ScheduleName;
  stages?: number | "auto";
  json?: boolean;
  dumpIr?: string;
}

function compileCommand(jobPath: string, flags: CompileFlags): number {
  let source: string;
  try {
    source = fs.readFileSync(jobPath, "utf8");
  } catch (e) {
    process.stderr.write(`loraflow: cannot read ${jobPath}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}\n`);
    return 1;
  }
  const outDir = flags.out ?? path.join("out", path.basename(jobPath).replace(/\.lf$/, ""));
  const result = compile(source, {
    fileName: jobPath,
    planDir: outDir,
    ...(flags.schedule !== undefined && { schedule: flags.schedule }),
    ...(flags.stages !== undefined && { stages: flags.stages }),
    ...(flags.dumpIr !== undefined && {
      afterPass: (pass, ir) => {
        if (pass !== flags.dumpIr) return;
        const { source: _source, ...rest } = ir;
        process.stdout.write(JSON.stringify(rest, null, 2) + "\n");
      },
    }),
  });
  if (result.diagnostics.length > 0) process.stderr.write(formatDiagnostics(result.diagnostics, source) + "\n");
  if (hasErrors(result.diagnostics) || !result.plan || !result.summary) {
    const errors = result.diagnostics.filter((d) => d.severity === "error").length;
    process.stderr.write(`${errors} error${errors === 1 ? "" : "s"}; nothing written\n`);
    return 1;
  }
  try {
    writeFilesAtomically(outDir, {
      "plan.json": JSON.stringify(result.plan, null, 2) + "\n",
      "summary.json": JSON.stringify(result.summary, null, 2) + "\n",
    });
  } catch (e) {
    process.stderr.write(`loraflow: cannot write ${outDir}: ${(e as Error).message}\n`);
    return 1;
  }
  if (flags.json) process.stdout.write(JSON.stringify(result.summary, null, 2) + "\n");
  else if (flags.dumpIr === undefined) {
    process.stdout.write(`${describePlan(result.plan, result.summary)}\nwrote ${path.join(outDir, "plan.json")} and ${path.join(outDir, "summary.json")}\n`);
  }
  return 0;
}

export function main(argv: string[]): void {
  const program = new Command("loraflow")
    .description("train many LoRA adapters at once on one frozen base model, from a compiled pipeline plan")
    .version(VERSION)
    .showHelpAfterError()
    .showSuggestionAfterError();

  program
    .command("compile")
    .description("compile a job file into DIR/plan.json and DIR/summary.json")
    .argument("<job>", "the job file (.lf)")
    .option("-o, --out <dir>", "output folder (default: out/<job name>)")
    .addOption(new Option("--schedule <name>", "override the plan block's schedule").choices(["gpipe", "1f1b", "batch", "mlora", "auto"]))
    .option("--stages <n>", "override the plan block's stage count (a number or auto)", stagesArgument)
    .option("--json", "also print summary.json to stdout")
    .addOption(new Option("--dump-ir <pass>", "print the IR after a pass as JSON").choices(PASS_NAMES))
    .action((job: string, flags: CompileFlags) => {
      process.exitCode = compileCommand(job, flags);
    });

  program.parse(argv);
}
