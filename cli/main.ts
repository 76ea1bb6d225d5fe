import { Command, InvalidArgumentError, Option } from "commander";
import { PASS_NAMES, VERSION } from "../compiler/index.js";
import { compileCommand, type CompileFlags } from "./commands/compile.js";
import { dataCommand, type DataFlags } from "./commands/data.js";
import { demoCommand, type DemoFlags } from "./commands/demo.js";
import { evalCommand, type EvalFlags } from "./commands/eval.js";
import { generateCommand, type GenerateFlags } from "./commands/generate.js";
import { runCommand, type RunFlags } from "./commands/run.js";
import { guardOutput, printError } from "./output.js";

function wholeNumber(min: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isSafeInteger(n) || n < min) throw new InvalidArgumentError(`expected a whole number >= ${min}`);
    return n;
  };
}

function nonNegative(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError("expected a number >= 0");
  return n;
}

function stagesArgument(value: string): number | "auto" {
  if (value === "auto") return "auto";
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError("expected a whole number >= 1 or auto");
  return n;
}

export function main(argv: string[]): void {
  guardOutput();
  const program = new Command("loraflow")
    .description("train many LoRA adapters at once on one frozen base model, from a compiled pipeline plan")
    .version(VERSION)
    .showHelpAfterError()
    .showSuggestionAfterError();

  program
    .command("compile")
    .description("compile a job file into DIR/plan.json, plan.ts, summary.json, schedule.svg, trace.json and report.html")
    .argument("<job>", "the job file (.lf)")
    .option("-o, --out <dir>", "output folder (default: out/<job name>)")
    .addOption(new Option("--schedule <name>", "override the plan block's schedule").choices(["gpipe", "1f1b", "batch", "mlora", "auto"]))
    .option("--stages <n>", "override the plan block's stage count (a number or auto)", stagesArgument)
    .option("--json", "also print summary.json to stdout")
    .option("--compare", "print the table of every schedule weighed for this job: makespan, idle, peak memory, fits")
    .addOption(new Option("--dump-ir <pass>", "print the IR after a pass as JSON").choices(PASS_NAMES))
    .addOption(new Option("--emit <what>", "also print the compiled stage programs, one op a line").choices(["programs"]))
    .action((job: string, flags: CompileFlags) => {
      process.exitCode = compileCommand(job, flags);
    });

  program
    .command("run")
    .description("train a job (compiling it first) or a compiled plan folder, and write every adapter in PEFT format")
    .argument("<job-or-plan>", "a job file (.lf) or a folder holding plan.json")
    .option("-o, --out <dir>", "where a compiled job's plan goes (default: out/<job name>)")
    .addOption(new Option("--backend <name>", "where to train: auto picks the GPUs where it can run the plan there").choices(["auto", "cpu", "cuda", "cuda-emulated"]).default("auto"))
    .option("--max-steps <n>", "stop every adapter after n optimizer steps", wholeNumber(1))
    .option("--threads <n>", "BLAS threads per stage worker", wholeNumber(1))
    .option("--resume", "continue from the run's latest saved state (PLAN_DIR/resume), to the same bits as a run never stopped")
    .option("--engine-run <file>", "write what the run would train to FILE, for the standalone driver (build/loraflow_engine_run), instead of training")
    .action(async (target: string, flags: RunFlags) => {
      process.exitCode = await runCommand(target, flags);
    });

  program
    .command("demo")
    .description("write a small model and data for three skills, train three adapters on them together, and show what each learnt")
    .option("-o, --out <dir>", "where the demo's model, data, job and plan go (default: out/demo)")
    .option("--quick", "fewer steps: done within a minute on two cores")
    .action(async (flags: DemoFlags) => {
      process.exitCode = await demoCommand(flags);
    });

  program
    .command("data")
    .description("each adapter's examples exactly as training sees them (templated, tokenized, truncated, before packing), and a summary")
    .argument("<job-or-plan>", "a job file (.lf) or a folder holding plan.json")
    .option("--adapter <name>", "only this adapter")
    .option("-o, --out <path>", "write the examples as `tokens` JSONL: a file for one adapter, a folder of NAME.jsonl for several")
    .option("--show <n>", "print the first n training examples of each adapter, decoded, with the trained spans marked", wholeNumber(1))
    .action((target: string, flags: DataFlags) => {
      process.exitCode = dataCommand(target, flags);
    });

  program
    .command("eval")
    .description("mean cross-entropy of a model (and adapter) on a tokens file, Hugging Face's causal-LM loss")
    .requiredOption("--model <dir>", "a Hugging Face model folder")
    .option("--adapter <dir>", "a PEFT LoRA adapter folder")
    .requiredOption("--data <file>", "JSONL of {\"input_ids\": [...], \"labels\": [...]}")
    .option("--seq-len <n>", "sequence length examples are packed into (default: 1024, or max_seq if shorter)", wholeNumber(1))
    .option("--json", "print {\"loss\": ..., \"tokens\": ...}")
    .action((flags: EvalFlags) => {
      process.exitCode = evalCommand(flags);
    });

  program
    .command("generate")
    .description("continue a prompt or a conversation with a model (and a PEFT adapter), greedy or sampled, printing tokens as they come")
    .requiredOption("--model <dir>", "a Hugging Face model folder (config.json, weights, tokenizer.json)")
    .option("--adapter <dir>", "a PEFT LoRA adapter folder")
    .option("--prompt <text>", "the text to continue")
    .option("--chat <json>", 'a conversation, [{"role": "user", "content": "..."}], rendered with the chat template')
    .option("--max-tokens <n>", "new tokens at most (default 128)", wholeNumber(1))
    .option("--temperature <t>", "0: greedy (default); above: sampled", nonNegative)
    .option("--top-p <p>", "nucleus sampling: keep the most likely tokens up to this probability (default 1)", nonNegative)
    .option("--seed <n>", "seed of the sampling", wholeNumber(0))
    .action((flags: GenerateFlags) => {
      process.exitCode = generateCommand(flags);
    });

  program.parseAsync(argv).catch((e: unknown) => {
    printError(`loraflow: internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exitCode = 2;
  });
}
