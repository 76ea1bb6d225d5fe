/**
 * `npm run bench:schedules`: the schedules side by side. The simulator against the design's
 * closed forms on equal stages; the LoRA-aware interleaving against flushing schedules; every
 * example under every schedule with what `auto` chose; and, for a small 2-stage job, the CPU
 * engine's measured idle fraction next to the simulator's.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { compile, formatDiagnostics, type Summary } from "../compiler/index.js";
import { runPlan } from "../runtime/run.js";

const EXAMPLES = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "examples");
const SCHEDULES = ["gpipe", "1f1b", "batch", "mlora", "auto"] as const;

function summarise(source: string, baseDir: string): Summary | undefined {
  const r = compile(source, { baseDir });
  return r.summary;
}

const equal = (schedule: string, adapters: number, steps: number) => `
model m { arch llama layers 32 hidden 4096 heads 32 ffn 11008 vocab 256 max_seq 512 }
${Array.from({ length: adapters }, (_, i) => `adapter a${i} { data "data/math.jsonl" rank 16 targets q_proj v_proj seq_len 512 batch 8 micro_batch 2 steps ${steps} }`).join("\n")}
cluster c { gpu H100 gpus 4 }
plan { schedule ${schedule} stages 4 }`;

console.log("equal stages (32 layers, vocab 256, NVLink), p = 4, m = 4:");
console.log("  schedule   adapters  idle     closed form");
for (const [schedule, adapters, form] of [
  ["gpipe", 1, 3 / 7],
  ["1f1b", 1, 3 / 7],
  ["1f1b", 4, 3 / 7],
  ["batch", 4, 3 / 7],
  ["mlora", 4, 3 / (50 * 4 * 4 + 3)],
  ["auto", 4, 3 / (50 * 4 * 4 + 3)],
] as const) {
  const s = summarise(equal(schedule, adapters, 50), EXAMPLES)!;
  console.log(`  ${schedule.padEnd(9)}  ${String(adapters).padEnd(8)}  ${s.idleFraction.toFixed(4)}   ${form.toFixed(4)}${schedule === "mlora" || schedule === "auto" ? " (whole-job LoRAPP bound; steady state 0)" : ""}`);
}

console.log("\nexamples (makespan in seconds, idle fraction):");
for (const name of fs.readdirSync(EXAMPLES).filter((f) => f.endsWith(".lf")).sort()) {
  const source = fs.readFileSync(path.join(EXAMPLES, name), "utf8");
  const cells: string[] = [];
  let auto: Summary | undefined;
  const makespans: number[] = [];
  for (const schedule of SCHEDULES) {
    const replaced = source.replace(/(plan \{[^}]*?)schedule \w+/, `$1schedule ${schedule}`);
    const r = compile(replaced, { fileName: path.join(EXAMPLES, name) });
    if (!r.summary) {
      const fit = r.diagnostics.some((d) => d.code === "LF4002");
      cells.push(`${schedule} ${fit ? "does not fit" : "fails: " + r.diagnostics[0]?.message}`);
      continue;
    }
    if (schedule === "auto") auto = r.summary;
    else makespans.push(r.summary.makespanSeconds);
    cells.push(`${schedule} ${r.summary.makespanSeconds.toFixed(1)} (${r.summary.idleFraction.toFixed(3)})`);
  }
  const ok = auto && makespans.every((m) => auto!.makespanSeconds <= m * (1 + 1e-9));
  const label = auto?.comparison?.find((c) => c.chosen)?.label ?? auto?.schedule;
  console.log(`  ${name}: ${cells.join("  ")}  -> auto chose ${label}${ok ? ", no slower than any" : ", SLOWER THAN ANOTHER"}`);
}

// Short micro-batches (128 tokens) leave an H100's products memory-bound: fusing adapters into
// shared micro-batches reads each weight once for all of them, and interleaving the fused groups
// keeps the pipeline full. Everything `auto` weighed, side by side.
const shortJob = path.join(EXAMPLES, "llama3-8b-short-4xh100.lf");
const weighed = compile(fs.readFileSync(shortJob, "utf8"), { fileName: shortJob, compare: true }).summary!.comparison!;
console.log("\nllama3-8b-short-4xh100.lf (8 adapters of 128-token micro-batches, 4 x H100): every schedule auto weighed");
const mloraAlone = weighed.find((c) => c.label === "mlora")!.makespanSeconds!;
for (const c of weighed) {
  const m = c.makespanSeconds;
  console.log(`  ${c.chosen ? "*" : " "} ${c.label.padEnd(38)} ${m === null ? "-" : `${m.toFixed(1)} s`.padStart(8)}  idle ${c.idleFraction?.toFixed(3) ?? "-"}  ${m === null ? "" : `${(mloraAlone / m).toFixed(2)}x mlora`}`);
}

// `stages auto` against every fixed stage count, for a job whose adapters interleave: eight
// adapters of one micro-batch per step on 8 x A100 (a flushing schedule would gain nothing from
// more stages; an interleaved stream gains nearly p-fold).
const oneMicroBatch = (stages: number | "auto") => `
model m { layers 32 hidden 4096 heads 32 ffn 11008 vocab 32000 max_seq 512 }
${Array.from({ length: 8 }, (_, i) => `adapter a${i} { data "data/math.jsonl" rank 16 targets all seq_len 512 batch 2 micro_batch 2 steps 100 }`).join("\n")}
cluster c { gpu A100-80G gpus 8 }
plan { schedule auto stages ${stages} }`;
console.log("\nstages auto, 8 adapters of one micro-batch per step, 8 x A100 (makespan in seconds):");
const counts = ([1, 2, 4, 8, "auto"] as const).map((p) => {
  const r = compile(oneMicroBatch(p), { baseDir: EXAMPLES });
  return `${p === "auto" ? `auto (${r.plan!.stages.length})` : p}: ${r.summary!.makespanSeconds.toFixed(1)}`;
});
console.log(`  ${counts.join("  ")}`);

// The engine against the simulator: a small job on 2 CPU stage workers.
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "loraflow-bench-schedules-"));
fs.writeFileSync(path.join(dir, "d.jsonl"), Array.from({ length: 64 }, (_, i) => JSON.stringify({ input_ids: Array.from({ length: 128 }, (_, t) => (i * 7 + t * 3) % 2048) })).join("\n") + "\n");
console.log("\nCPU engine (2 stages, hidden 256, 4 adapters): measured idle vs simulated idle");
for (const schedule of ["1f1b", "batch", "mlora"]) {
  const source = `model m { arch llama layers 4 hidden 256 heads 4 ffn 704 vocab 2048 max_seq 128 dtype fp32 }
${[0, 1, 2, 3].map((i) => `adapter a${i} { rank 8 targets q_proj v_proj data "d.jsonl" format tokens seq_len 128 batch 8 micro_batch 2 steps 6 seed ${i} }`).join("\n")}
cluster c { gpu cpu gpus 2 }
plan { schedule ${schedule} stages 2 }`;
  const r = compile(source, { baseDir: dir, planDir: dir });
  if (!r.plan) {
    console.error(formatDiagnostics(r.diagnostics, source));
    process.exit(1);
  }
  const run = await runPlan(r.plan, dir, { save: false });
  const busy = run.stages.reduce((n, s) => n + s.busySeconds, 0);
  const measured = 1 - busy / (run.stages.length * run.seconds);
  console.log(`  ${schedule.padEnd(6)} measured ${measured.toFixed(3)} (${run.stages.map((s) => `busy ${s.busySeconds.toFixed(2)} s / waiting ${s.waitSeconds.toFixed(2)} s`).join(", ")})  simulated ${r.summary!.idleFraction.toFixed(3)}`);
}
fs.rmSync(dir, { recursive: true, force: true });
