/**
 * `npm run bench:cpu`: training throughput of the CPU engine, side by side in one process with
 * this machine's own float GEMM rate (OpenBLAS when the build found it, else the portable
 * kernel). A model with hidden 512 over 2 stages, 4 rank-16 adapters on q/k/v/o (the mLoRA
 * setting, scaled down), trained fused (`batch`), one adapter at a time (`1f1b`) and interleaved
 * without flushes (`mlora`).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { compile, formatDiagnostics, type Plan } from "../compiler/index.js";
import { loadNative } from "../runtime/native.js";
import { runPlan, type RunResult } from "../runtime/run.js";

const HIDDEN = 512, LAYERS = 4, HEADS = 8, FFN = 1408, VOCAB = 8192, SEQ = 256, RANK = 16, STEPS = 3;

function job(schedule: string): string {
  const adapters = ["a", "b", "c", "d"].map(
    (name, i) =>
      `adapter ${name} { rank ${RANK} alpha ${2 * RANK} dropout 0.05 targets q_proj k_proj v_proj o_proj data "data.jsonl" format tokens ` +
      `seq_len ${SEQ} batch 8 micro_batch 2 steps ${STEPS} optimizer adamw { lr 1e-4 } seed ${i} }`,
  );
  return [
    `model bench { arch llama layers ${LAYERS} hidden ${HIDDEN} heads ${HEADS} kv_heads ${HEADS} ffn ${FFN} vocab ${VOCAB} max_seq ${SEQ} dtype fp32 }`,
    ...adapters,
    "cluster box { gpu cpu gpus 2 }",
    `plan { schedule ${schedule} stages 2 }`,
  ].join("\n");
}

/** Multiply-adds of one token through the model, forward and backward (dX and LoRA only). */
function flopsPerToken(): number {
  const hd = HIDDEN / HEADS;
  const linear = LAYERS * (4 * HIDDEN * HIDDEN + 3 * HIDDEN * FFN) + VOCAB * HIDDEN;
  const attendedAvg = (SEQ + 1) / 2;
  const attention = LAYERS * HEADS * hd * attendedAvg * (4 + 10); // forward QK, PV; backward recompute + 4 products
  const lora = LAYERS * 4 * RANK * (HIDDEN + HIDDEN) * 2 * 3; // forward, and about twice that backward
  return 2 * linear + 2 * linear + attention + lora;
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "loraflow-bench-cpu-"));
const lines = Array.from({ length: 64 }, (_, i) => JSON.stringify({ input_ids: Array.from({ length: SEQ }, (_, t) => (i * 131 + t * 17) % VOCAB) }));
fs.writeFileSync(path.join(dir, "data.jsonl"), lines.join("\n") + "\n");

function plan(schedule: string): Plan {
  const source = job(schedule);
  const r = compile(source, { baseDir: dir, planDir: dir });
  if (!r.plan) throw new Error(formatDiagnostics(r.diagnostics, source));
  return r.plan;
}

const native = loadNative();
const cores = os.cpus().length;
const sgemm = (2 * 1024 ** 3) / native.benchGemm(1024, 1024, 1024, 10, cores) / 1e9;
const sgemmOne = (2 * 1024 ** 3) / native.benchGemm(1024, 1024, 1024, 10, 1) / 1e9;
const sgemmRows = (2 * 512 * HIDDEN * HIDDEN) / native.benchGemm(512, HIDDEN, HIDDEN, 50, 1) / 1e9;

async function measure(schedule: string): Promise<{ run: RunResult; tokens: number; seconds: number; gflops: number; busyGflops: number }> {
  const p = plan(schedule);
  await runPlan(p, dir, { save: false, maxSteps: 1 }); // warm-up: page in, first allocations
  const run = await runPlan(p, dir, { save: false });
  const tokens = p.adapters.reduce((n, a) => n + a.steps * a.batch * a.seqLen, 0);
  const flops = tokens * flopsPerToken();
  const busy = run.stages.reduce((t, s) => t + s.busySeconds, 0);
  return { run, tokens, seconds: run.seconds, gflops: flops / run.seconds / 1e9, busyGflops: flops / busy / 1e9 };
}

const fused = await measure("batch");
const sequential = await measure("1f1b");
const interleaved = await measure("mlora");
const pct = (x: number) => `${(100 * x).toFixed(0)}%`;

console.log(`CPU engine, ${native.build.blas} GEMM, ${cores} cores`);
console.log(
  `  machine sgemm: ${sgemm.toFixed(1)} GFLOP/s on ${cores} threads (1024^3); one thread ${sgemmOne.toFixed(1)} (1024^3), ${sgemmRows.toFixed(1)} (512 x ${HIDDEN} x ${HIDDEN})`,
);
console.log(`  model: hidden ${HIDDEN}, ${LAYERS} layers, ffn ${FFN}, vocab ${VOCAB}, seq ${SEQ}; 4 adapters rank ${RANK} q/k/v/o, 2 stages, ${STEPS} steps each`);
for (const [name, m] of [
  ["fused (batch)", fused],
  ["one adapter at a time (1f1b)", sequential],
  ["interleaved, no flush (mlora)", interleaved],
] as const) {
  console.log(`  ${name}: ${Math.round(m.tokens / m.seconds)} tokens/s, ${m.gflops.toFixed(1)} GFLOP/s = ${(m.gflops / sgemm).toFixed(2)} of the machine's sgemm`);
  console.log(`    per worker while busy: ${m.busyGflops.toFixed(1)} GFLOP/s = ${(m.busyGflops / sgemmOne).toFixed(2)} of one thread's sgemm (the rest is pipeline idle time)`);
  m.run.stages.forEach((s, i) => {
    const total = s.busySeconds + s.waitSeconds;
    console.log(`    stage ${i}: busy ${s.busySeconds.toFixed(2)} s, waiting ${s.waitSeconds.toFixed(2)} s (idle ${pct(s.waitSeconds / total)})`);
  });
}
console.log(`  fused / one at a time: ${(sequential.seconds / fused.seconds).toFixed(2)}x`);
fs.rmSync(dir, { recursive: true, force: true });
