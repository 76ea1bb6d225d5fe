import * as fs from "node:fs";
import * as path from "node:path";
import type { Plan } from "../../compiler/index.js";
import { adapterDataset } from "../../runtime/data/adapter-data.js";
import { writeDemoModel } from "../../runtime/demo/model-folder.js";
import { taskInputs, TASKS } from "../../runtime/demo/tasks.js";
import { RunError } from "../../runtime/errors.js";
import { examplesLoss } from "../../runtime/eval.js";
import { generate, loadModel, promptIds } from "../../runtime/generate.js";
import { writeFileDurably } from "../../runtime/output/atomic.js";
import { runPlan } from "../../runtime/run.js";
import { loadBaseWeights } from "../../runtime/weights/base-weights.js";
import { initLora } from "../../runtime/weights/lora.js";
import { print, printError } from "../output.js";
import { table } from "../print-summary.js";
import { Progress } from "../progress.js";
import { compileToDir } from "./compile.js";

export interface DemoFlags {
  out?: string;
  quick?: boolean;
}

/** The first line of the job the demo writes: how it knows a folder as its own. */
const MARK = "# loraflow demo:";
const SEED = 7;

export function demoJob(quick: boolean): string {
  // --quick trains fewer steps at a constant rate; the full demo decays it, to a cleaner finish.
  const steps = quick ? 160 : 400;
  const schedule = quick ? "constant_with_warmup" : "cosine";
  const adapter = (name: string, format: string, seqLen: number, seed: number) =>
    `adapter ${name} {\n  rank 16  alpha 32  targets all\n  data "data/${name}.jsonl"  format ${format}  seq_len ${seqLen}  eval_split 0.05\n` +
    `  batch 16  micro_batch 8  steps ${steps}\n  optimizer adamw { lr 3e-3  warmup 10  schedule ${schedule} }\n  seed ${seed}\n}\n`;
  return (
    `${MARK} three adapters learn three skills on one small frozen model, trained together${quick ? " (--quick)" : ""}.\n` +
    `model demo { from "model" }\n` +
    adapter("reverse", "chat", 32, 1) +
    adapter("upper", "alpaca", 64, 2) +
    adapter("add_one", "completion", 32, 3) +
    `cluster laptop { gpu cpu  gpus 2 }\nplan { schedule auto  stages 2 }\n`
  );
}

/** The demo's folder: new, empty, or one it wrote before (its job file starts with the mark). */
export function claim(out: string): void {
  if (!fs.existsSync(out)) return;
  if (!fs.statSync(out).isDirectory()) throw new RunError("outputRefused", `${out} is a file, not a folder; choose another --out`);
  const names = fs.readdirSync(out);
  if (names.length === 0) return;
  const job = path.join(out, "demo.lf");
  const ours = fs.existsSync(job) && fs.readFileSync(job, "utf8").startsWith(MARK);
  if (!ours) throw new RunError("outputRefused", `${out} holds ${names.slice(0, 3).join(", ")}${names.length > 3 ? " and more" : ""}, which the demo did not write; choose another --out`);
}

const percent = (k: number, n: number) => `${k}/${n} (${Math.round((100 * k) / n)}%)`;

/** Greedy answers to the held-out prompts that equal the expected answer, with the plan's first adapter's init (or none). */
function exactMatches(plan: Plan, planDir: string, task: (typeof TASKS)[number], inputs: string[]): number {
  const model = loadModel(plan, planDir);
  let right = 0;
  for (const input of inputs) {
    const answer = task.answer(input);
    const ids = generate(model, promptIds(model.tokenizer, task.prompt(input)), { maxTokens: model.tokenizer.encode(answer).length + 4 });
    if (model.tokenizer.decode(ids) === answer) right++;
  }
  return right;
}

/**
 * `loraflow demo`: with nothing downloaded, writes a small Hugging Face Llama (random weights, a
 * byte-level BPE tokenizer trained on the demo's text, a chat template), data for three skills in
 * three formats, and a job; compiles it to a 2-stage plan with the auto schedule, trains the
 * three adapters together on the CPU, then shows what each learnt: its held-out loss before and
 * after, and how often greedy generation answers held-out prompts exactly, with the adapter and
 * with the base model alone.
 */
export async function demoCommand(flags: DemoFlags): Promise<number> {
  const out = flags.out ?? path.join("out", "demo");
  const quick = flags.quick === true;
  const started = performance.now();
  try {
    claim(out);
    fs.mkdirSync(path.join(out, "model"), { recursive: true });
    fs.mkdirSync(path.join(out, "data"), { recursive: true });
    writeDemoModel(path.join(out, "model"), SEED);
    const heldOut = new Map<string, string[]>();
    for (const task of TASKS) {
      const { train, heldOut: held } = taskInputs(task, 400, quick ? 20 : 40, SEED);
      heldOut.set(task.name, held);
      writeFileDurably(path.join(out, "data", `${task.name}.jsonl`), train.map((x) => JSON.stringify(task.line(x))).join("\n") + "\n");
    }
    const jobFile = path.join(out, "demo.lf");
    writeFileDurably(jobFile, demoJob(quick));
    print(`wrote a small Llama (${path.join(out, "model")}: config.json, model.safetensors, tokenizer.json), data for 3 skills in ${path.join(out, "data")}, and ${jobFile}\n`);
    const compiled = compileToDir(jobFile, { out: path.join(out, "plan") }, false);
    if (!compiled) return 1;
    const { plan, dir } = compiled;
    print(`compiled a ${plan.stages.length}-stage plan (${plan.schedule.name}) into ${dir}; training ${plan.adapters.length} adapters together on ${plan.stages.length} CPU stage workers\n`);

    const progress = new Progress(plan.adapters.map((a) => a.name));
    const result = await runPlan(plan, dir, {
      onStep: (s) => progress.step(s),
      onWarning: (w) => printError(`loraflow: warning ${w.code}: ${w.message}\n`),
    });
    progress.done();

    // What each adapter learnt: its held-out examples' loss, and exact answers to prompts it never saw.
    const weights = loadBaseWeights(plan, dir);
    const rows = [["adapter", "format", "held-out loss before", "after", "exact answers, adapter", "base model"]];
    let allBeat = true;
    plan.adapters.forEach((a, i) => {
      const task = TASKS.find((t) => t.name === a.name)!;
      const held = adapterDataset(plan, dir, a).eval;
      const before = examplesLoss(plan, weights, a, initLora(plan, a), held).loss;
      const after = examplesLoss(plan, weights, a, result.adapters[i]!.sites, held).loss;
      const inputs = heldOut.get(a.name)!;
      const withAdapter = exactMatches({ ...plan, adapters: [{ ...a, init: a.out }] }, dir, task, inputs);
      const base = exactMatches({ ...plan, adapters: [{ ...a, init: null }] }, dir, task, inputs);
      allBeat &&= withAdapter > base;
      rows.push([a.name, a.data.format, before.toFixed(4), after.toFixed(4), percent(withAdapter, inputs.length), percent(base, inputs.length)]);
    });
    print(`\n${table(rows)}\n\n`);
    print(`schedule picture  ${path.join(dir, "schedule.svg")}  (measured: ${path.join(dir, "trace.run.json")}, beside the predicted trace.json)\n`);
    print(`report            ${path.join(dir, "report.html")}\n`);
    print(`metrics           ${path.join(dir, "metrics.jsonl")}\n`);
    print(`adapters          ${plan.adapters.map((a) => path.join(dir, a.out)).join(", ")}\n`);
    print(`try one           loraflow generate --model ${path.join(out, "model")} --adapter ${path.join(dir, plan.adapters[0]!.out)} --chat '[{"role": "user", "content": "reverse ${heldOut.get("reverse")![0]}"}]'\n`);
    print(`done in ${((performance.now() - started) / 1000).toFixed(1)} s\n`);
    if (!allBeat) {
      printError("loraflow demo: an adapter did not beat the base model on its task\n");
      return 1;
    }
    return 0;
  } catch (e) {
    if (!(e instanceof RunError)) throw e;
    printError(`loraflow demo: error ${e.code}: ${e.message}\n`);
    return 1;
  }
}
