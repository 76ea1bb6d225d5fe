import { formatBytes } from "../../dsl/index.js";
import type { StageMemory } from "../cost/memory.js";
import type { Plan, Summary } from "../plan/schema.js";
import { comparisonRows } from "./comparison.js";
import { escapeXml as escape, formatTime } from "./format.js";

const STYLE = `
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; margin: 24px auto; max-width: 1240px; padding: 0 16px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
.sub { color: #555; margin-bottom: 16px; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr)); gap: 10px; }
.figure { border: 1px solid #ddd; border-radius: 6px; padding: 8px 12px; }
.figure b { display: block; font-size: 20px; } .figure span { color: #666; font-size: 12px; }
table { border-collapse: collapse; } td, th { padding: 4px 10px; border-bottom: 1px solid #eee; text-align: left; }
th { font-weight: 600; border-bottom: 1px solid #bbb; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.chosen td { background: #eef5ff; font-weight: 600; } tr.nofit td { color: #a33; }
.bar { position: relative; height: 22px; width: 720px; background: #f4f4f4; border: 1px solid #ccc; }
.bar div { position: absolute; top: 0; height: 100%; }
.bar .over { border-right: 2px solid #c00; }
td.label { white-space: nowrap; }
.key span { display: inline-block; width: 12px; height: 12px; margin: 0 4px 0 14px; vertical-align: -2px; }
.svg { overflow-x: auto; border: 1px solid #ddd; }
`;

/** Memory parts, in colours none of the schedule picture's adapters use. */
const PARTS = [
  { key: "weightBytes", name: "base weights", color: "#8c8c8c" },
  { key: "adapterBytes", name: "adapter state", color: "#3b5b92" },
  { key: "activationBytes", name: "stashed activations", color: "#e07b39" },
  { key: "workspaceBytes", name: "workspace", color: "#f2c14e" },
] as const;

function figure(value: string, label: string): string {
  return `<div class="figure"><b>${escape(value)}</b><span>${escape(label)}</span></div>`;
}

function table(rows: string[][], numeric: (c: number) => boolean, rowClass?: (r: number) => string): string {
  const [head, ...body] = rows;
  const th = head!.map((h) => `<th>${escape(h.trim())}</th>`).join("");
  const trs = body.map((r, i) => `<tr class="${rowClass?.(i) ?? ""}">${r.map((c, j) => `<td${numeric(j) ? ' class="n"' : ""}>${escape(c.trim())}</td>`).join("")}</tr>`);
  return `<table><thead><tr>${th}</tr></thead><tbody>${trs.join("")}</tbody></table>`;
}

/** Each stage's peak as a bar of its parts against the device's capacity (the bar's full width). */
function memoryBars(plan: Plan, memory: readonly StageMemory[]): string {
  const capacity = plan.cluster.device.memoryBytes;
  const scale = Math.max(capacity, ...memory.map((m) => m.totalBytes));
  const rows = memory.map((m, s) => {
    let left = 0;
    const segments = PARTS.map((p) => {
      const width = (m[p.key] / scale) * 100;
      const div = `<div style="left:${left.toFixed(3)}%;width:${width.toFixed(3)}%;background:${p.color}" title="${escape(`${p.name}: ${formatBytes(m[p.key])}`)}"></div>`;
      left += width;
      return div;
    }).join("");
    const line = `<div class="over" style="left:0;width:${((capacity / scale) * 100).toFixed(3)}%"></div>`;
    const note = `${formatBytes(m.totalBytes)} of ${formatBytes(capacity)} (${((m.totalBytes / capacity) * 100).toFixed(1)}%), ${m.inFlight} micro-batch${m.inFlight === 1 ? "" : "es"} in flight at the peak`;
    return `<tr><td class="label">stage ${s}</td><td><div class="bar">${segments}${line}</div></td><td>${escape(note)}</td></tr>`;
  });
  const key = PARTS.map((p) => `<span style="background:${p.color}"></span>${p.name}`).join("") + `<span style="background:#c00;width:2px"></span>capacity`;
  return `<table>${rows.join("")}</table><p class="key">${key}</p>`;
}

/**
 * report.html: one self-contained page (no scripts, no links out) that explains a plan: the
 * headline figures, each stage's memory against its device, the schedule picture, every stage's
 * work, and the schedules weighed against each other.
 */
export function reportHtml(plan: Plan, summary: Summary, memory: readonly StageMemory[], svg: string | undefined): string {
  const m = plan.model.config;
  const c = plan.cluster;
  const label = summary.comparison?.find((r) => r.chosen)?.label ?? summary.schedule;
  const title = `${plan.model.name}: ${plan.adapters.length} adapter${plan.adapters.length === 1 ? "" : "s"}, ${label}`;
  const stageRows = [
    ["stage", "device", "layers", "busy", "idle", "peak memory"],
    ...summary.stages.map((s) => [
      String(s.index),
      String(s.device),
      `${s.layers[0]}-${s.layers[1] - 1}${s.embedding ? " + embedding" : ""}${s.head ? " + head" : ""}`,
      formatTime(s.busySeconds),
      summary.makespanSeconds > 0 ? (1 - s.busySeconds / summary.makespanSeconds).toFixed(3) : "-",
      formatBytes(s.memoryBytes),
    ]),
  ];
  const adapterRows = [
    ["adapter", "rank", "targets", "seq_len", "batch", "micro-batches", "steps"],
    ...plan.adapters.map((a) => [a.name, String(a.rank), a.targets.join(" "), String(a.seqLen), String(a.batch), `${a.microBatchesPerStep} x ${a.microBatch}`, String(a.steps)]),
  ];
  // Phases change as adapters finish: which train together, for how many steps.
  const phaseRows = [
    ["phase", "steps", "adapters training", "micro-batches per round"],
    ...plan.schedule.phases.map((p, i) => [
      String(i),
      String(p.rounds * p.stepsPerRound),
      p.adapters.map((a) => plan.adapters[a]!.name).join(" "),
      `${p.microBatches.length} (${p.stepsPerRound} step${p.stepsPerRound === 1 ? "" : "s"} of each)`,
    ]),
  ];
  const comparison = comparisonRows(summary.comparison);
  const compared = comparison
    ? table(comparison, (j) => j >= 1 && j <= 3, (i) => (summary.comparison![i]!.chosen ? "chosen" : summary.comparison![i]!.fits ? "" : "nofit"))
    : `<p>Only the requested schedule was weighed: this plan was compiled without <code>compare</code>. <code>loraflow compile</code> weighs them all.</p>`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${escape(title)}</title>
<style>${STYLE}</style>
</head>
<body>
<h1>${escape(title)}</h1>
<div class="sub">${escape(
    `llama, ${m.layers} layers, hidden ${m.hidden}, vocab ${m.vocab}, ${plan.model.dtype}; ${c.nodes} x ${c.gpusPerNode} ${c.device.name} ` +
      `(${formatBytes(c.device.memoryBytes)}, ${c.device.tflops} TFLOP/s); ${plan.stages.length} stage${plan.stages.length === 1 ? "" : "s"}; loraflow ${plan.compiler.version}`,
  )}</div>
<div class="figures">
${figure(formatTime(summary.makespanSeconds), "makespan (simulated)")}
${figure(formatTime(summary.lowerBoundSeconds), "lower bound")}
${figure(summary.idleFraction.toFixed(3), "idle fraction")}
${figure(summary.imbalance.toFixed(3), "stage imbalance")}
${figure(Math.round(summary.tokensPerSecond).toLocaleString("en-US"), "tokens/s")}
${figure(formatBytes(Math.max(...summary.stages.map((s) => s.memoryBytes))), "largest stage peak")}
</div>
<h2>Memory per stage</h2>
${memoryBars(plan, memory)}
<h2>Schedule</h2>
<p>Hover a box for its micro-batch and times. <code>trace.json</code> beside this page holds the same stretch with every message and wait; open it in ui.perfetto.dev or chrome://tracing.</p>
${svg ? `<div class="svg">${svg.replace(/^<\?xml[^>]*>\s*/, "")}</div>` : "<p>No picture: the plan was not simulated.</p>"}
<h2>Stages</h2>
${table(stageRows, (j) => j >= 3)}
<h2>Adapters</h2>
${table(adapterRows, (j) => [1, 3, 4, 6].includes(j))}
<h2>Phases</h2>
${table(phaseRows, (j) => j === 1)}
<h2>Schedules weighed</h2>
${compared}
</body>
</html>
`;
}
