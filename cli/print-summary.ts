import { formatBytes } from "../dsl/index.js";
import { formatTime, type Plan, type Summary } from "../compiler/index.js";

/** Rows of cells as aligned text, two spaces in. */
export function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) => "  " + r.map((cell, c) => cell.padEnd(widths[c]!)).join("  ").trimEnd()).join("\n");
}

function compact(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}K`;
  return String(n);
}

/** The human-readable account of a compiled plan that `loraflow compile` prints. */
export function describePlan(plan: Plan, summary: Summary): string {
  const m = plan.model.config;
  const c = plan.cluster;
  const lines: string[] = [];
  lines.push(
    `model ${plan.model.name}: llama, ${m.layers} layers, hidden ${m.hidden}, ${m.heads}/${m.kvHeads} heads, ` +
      `vocab ${m.vocab}, ${compact(plan.model.parameters)} parameters in ${plan.model.dtype}` +
      (plan.model.folder ? ` from ${plan.model.folder}` : " (inline: random weights)"),
  );
  lines.push(
    `cluster ${c.name}: ${c.nodes} x ${c.gpusPerNode} ${c.device.name} (${formatBytes(c.device.memoryBytes)}, ${c.device.tflops} TFLOP/s)`,
  );
  const label = summary.comparison?.find((r) => r.chosen)?.label ?? plan.schedule.name;
  lines.push(`schedule ${label} over ${plan.stages.length} stage${plan.stages.length === 1 ? "" : "s"}:`);
  lines.push(
    table([
      ["stage", "device", "layers", "embedding", "head", "busy", "peak memory", "capacity"],
      ...summary.stages.map((s) => [
        String(s.index),
        String(s.device),
        `${s.layers[0]}-${s.layers[1] - 1}`,
        s.embedding ? "yes" : "",
        s.head ? "yes" : "",
        formatTime(s.busySeconds),
        formatBytes(s.memoryBytes),
        formatBytes(s.memoryCapacityBytes),
      ]),
    ]),
  );
  lines.push(`adapters (${plan.adapters.length}):`);
  lines.push(
    table([
      ["name", "rank", "alpha", "targets", "seq", "batch", "micro", "steps", "optimizer"],
      ...plan.adapters.map((a) => [
        a.name,
        String(a.rank),
        String(a.alpha),
        a.targets.map((t) => t.replace("_proj", "")).join(","),
        String(a.seqLen),
        String(a.batch),
        `${a.microBatch} x${a.microBatchesPerStep}`,
        String(a.steps),
        `${a.optimizer.kind} lr ${a.optimizer.lr}`,
      ]),
    ]),
  );
  const rounds = plan.schedule.phases.reduce((n, p) => n + p.rounds, 0);
  lines.push(
    `simulated: makespan ${formatTime(summary.makespanSeconds)} (bound ${formatTime(summary.lowerBoundSeconds)}), idle ${summary.idleFraction.toFixed(3)}, ` +
      `imbalance ${summary.imbalance.toFixed(3)}, ${Math.round(summary.tokensPerSecond)} tokens/s`,
  );
  const others = (summary.comparison ?? []).filter((r) => !r.chosen && r.fits && r.makespanSeconds !== null).sort((a, b) => a.makespanSeconds! - b.makespanSeconds!);
  if (others[0] && summary.makespanSeconds > 0) {
    const ratio = others[0].makespanSeconds! / summary.makespanSeconds;
    lines.push(
      `weighed ${summary.comparison!.length} schedules (--compare lists them); the fastest other, ${others[0].label}, ` +
        (ratio >= 1 ? `takes ${ratio.toFixed(2)}x as long` : `would take ${ratio.toFixed(2)}x the time (\`schedule auto\` picks the fastest)`),
    );
  }
  lines.push(`${plan.schedule.phases.length} phase${plan.schedule.phases.length === 1 ? "" : "s"}, ${rounds} rounds; compiled in ${summary.compileMillis} ms`);
  return lines.join("\n");
}
