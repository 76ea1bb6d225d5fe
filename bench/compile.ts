/**
 * `npm run bench:compile`: how long `compile()` takes on the largest job we promise to plan
 * quickly: Llama-2-70B over 8 stages with 32 adapters of mixed ranks, targets and lengths.
 * Prints the median and spread of repeated runs after a warm-up, and each example's time.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { compile, formatDiagnostics } from "../compiler/index.js";

function job70b(adapters: number, schedule: string): string {
  const lines = [
    "model llama2_70b { arch llama layers 80 hidden 8192 heads 64 kv_heads 8 ffn 28672 vocab 32000 max_seq 4096 dtype bf16 }",
    'cluster a100x8 { gpu "A100-80G" gpus 8 }',
    `plan { schedule ${schedule} stages 8 }`,
  ];
  const targets = ["all", "attention", "q_proj v_proj", "mlp"];
  for (let i = 0; i < adapters; i++) {
    const rank = [8, 16, 32, 64][i % 4];
    lines.push(
      `adapter a${i} { rank ${rank} alpha ${2 * rank!} targets ${targets[i % 4]} data "data.jsonl" format tokens ` +
        `seq_len ${[512, 1024, 2048][i % 3]} batch 16 micro_batch ${[4, 2, 1][i % 3]} steps ${500 + 50 * (i % 7)} }`,
    );
  }
  return lines.join("\n");
}

const ms = (x: number) => `${x.toFixed(1)} ms`;

function time(fn: () => void, runs: number): number[] {
  fn();
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    fn();
    times.push(performance.now() - t);
  }
  return times.sort((a, b) => a - b);
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "loraflow-bench-"));
fs.writeFileSync(path.join(dir, "data.jsonl"), Array.from({ length: 1000 }, (_, i) => `{"input_ids": [${i}]}`).join("\n") + "\n");
for (const schedule of ["1f1b", "auto"]) {
  const source = job70b(32, schedule);
  const check = compile(source, { baseDir: dir });
  if (!check.plan) {
    console.error(formatDiagnostics(check.diagnostics, source));
    process.exit(1);
  }
  const phases = check.plan.schedule.phases;
  const actions = phases.reduce((n, p) => n + p.actions.reduce((m, l) => m + l.length, 0), 0);
  const times = time(() => compile(source, { baseDir: dir }), 20);
  console.log(`compile(): Llama-2-70B, 8 stages, 32 adapters, schedule ${schedule} (${check.plan.schedule.name}): ${phases.length} phases, ${actions} actions`);
  console.log(`  median ${ms(times[10]!)}  min ${ms(times[0]!)}  max ${ms(times[19]!)}  (20 runs after a warm-up)  target < ${schedule === "auto" ? 2000 : 1000} ms`);
}

const examples = path.join(path.dirname(new URL(import.meta.url).pathname), "..", "..", "examples");
for (const name of fs.readdirSync(examples).filter((f) => f.endsWith(".lf")).sort()) {
  const file = path.join(examples, name);
  const text = fs.readFileSync(file, "utf8");
  const t = time(() => compile(text, { fileName: file }), 10);
  console.log(`  ${name.padEnd(24)} median ${ms(t[5]!)}`);
}
fs.rmSync(dir, { recursive: true, force: true });
