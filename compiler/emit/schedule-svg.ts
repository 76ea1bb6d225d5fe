import type { Plan } from "../plan/schema.js";
import type { Simulation, TimelineEvent } from "../simulate/simulate.js";
import { scheduleLabel } from "../schedules/fusion.js";
import { escapeXml as escape, formatTime, niceStep } from "./format.js";

/** Distinct hues that stay apart for the first dozen adapters. */
const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac", "#1f77b4", "#2ca02c"];

/**
 * Adapter i's colour: the palette, then hues a golden angle apart at three lightnesses, so that
 * a job of dozens of adapters still tells them apart (as hex, which every SVG renderer reads).
 */
export function adapterColour(i: number): string {
  if (i < PALETTE.length) return PALETTE[i]!;
  const h = (i * 137.508) % 360;
  const s = 0.55;
  const l = [0.42, 0.55, 0.68][i % 3]!;
  const f = (n: number) => {
    const k = (n + h / 30) % 12;
    const c = l - s * Math.min(l, 1 - l) * Math.max(-1, Math.min(k - 3, 9 - k, 1));
    return Math.round(255 * c).toString(16).padStart(2, "0");
  };
  return `#${f(0)}${f(8)}${f(4)}`;
}

/** Boxes per stage a picture holds before it shows only a stretch from the start. */
export const MAX_BOXES_PER_STAGE = 160;

/**
 * Where the picture stops: the end of the run, or, for long rounds, when the first stage to
 * reach MAX_BOXES_PER_STAGE forwards and backwards gets there, so that boxes stay wide enough
 * to read.
 */
function cutoff(timeline: readonly TimelineEvent[], stages: number): { end: number; cut: boolean } {
  const all = Math.max(1e-12, ...timeline.map((e) => e.end));
  let end = all;
  for (let s = 0; s < stages; s++) {
    const boxes = timeline.filter((e) => e.stage === s && e.op !== "STEP").sort((a, b) => a.start - b.start);
    if (boxes.length > MAX_BOXES_PER_STAGE) end = Math.min(end, boxes[MAX_BOXES_PER_STAGE - 1]!.end);
  }
  return { end, cut: end < all };
}

/**
 * The schedule as a picture: one row per stage, time to the right, a box per forward (solid)
 * and backward (lighter, outlined) coloured by adapter (a fused micro-batch in a band per
 * adapter), a black bar per optimizer step, and a legend. It shows the first rounds of the
 * first phase, as the simulator ran them, or the start of them when they are long.
 */
export function scheduleSvg(plan: Plan, events: readonly TimelineEvent[], simulation: Simulation): string {
  const stages = plan.stages.length;
  const { end, cut } = cutoff(events, stages);
  const timeline = events.filter((e) => e.start < end);
  const parts = new Map(plan.schedule.phases[0]!.microBatches.map((m) => [m.id, m.parts.map((p) => p.adapter)]));
  const left = 70;
  const top = 56;
  const row = 34;
  const width = 1200;
  const plotWidth = width - left - 20;
  const x = (t: number) => left + (Math.min(t, end) / end) * plotWidth;
  const legendTop = top + stages * row + 34;
  const adapters = plan.adapters.map((a, i) => ({ name: a.name, color: adapterColour(i) }));
  const legendRows = Math.ceil((adapters.length + 3) / 6);
  const height = legendTop + legendRows * 22 + 16;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${width}" height="${height}" fill="white"/>`);
  out.push(
    `<text x="${left}" y="22" font-size="15" font-weight="bold">${escape(`${plan.model.name}: ${scheduleLabel(plan.schedule, plan.adapters)} on ${stages} stage${stages === 1 ? "" : "s"}`)}</text>`,
    `<text x="${left}" y="40" fill="#555">${escape(
      `idle ${(100 * simulation.idleFraction).toFixed(1)}% of the job; makespan ${formatTime(simulation.makespanSeconds)} (bound ${formatTime(simulation.lowerBoundSeconds)}); ` +
        (cut ? `showing the first ${formatTime(end)} of the first round` : "showing the first rounds"),
    )}</text>`,
  );
  const step = niceStep(end, 8);
  for (let t = 0; t <= end + 1e-12; t += step) {
    out.push(`<line x1="${x(t).toFixed(1)}" y1="${top - 4}" x2="${x(t).toFixed(1)}" y2="${top + stages * row}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${x(t).toFixed(1)}" y="${top + stages * row + 16}" text-anchor="middle" fill="#555">${escape(formatTime(t))}</text>`);
  }
  for (let s = 0; s < stages; s++) {
    out.push(`<text x="${left - 10}" y="${top + s * row + row / 2 + 4}" text-anchor="end">stage ${s}</text>`);
  }
  for (const e of timeline) {
    const y = top + e.stage * row + 4;
    const w = Math.max(0.5, x(e.end) - x(e.start));
    const color = adapters[e.adapter]?.color ?? "#999";
    if (e.op === "STEP") {
      out.push(`<rect x="${x(e.start).toFixed(2)}" y="${y - 2}" width="${Math.max(2, w).toFixed(2)}" height="${row - 4}" fill="#111"><title>${escape(`stage ${e.stage}: STEP ${adapters[e.adapter]?.name}`)}</title></rect>`);
      continue;
    }
    const forward = e.op === "F";
    const members = parts.get(e.mb) ?? [e.adapter];
    const title = `<title>${escape(`stage ${e.stage}: ${e.op} mb${e.mb} (${members.map((a) => adapters[a]?.name).join(" + ")}), ${formatTime(e.start)} to ${formatTime(e.end)}`)}</title>`;
    if (members.length === 1) {
      out.push(
        `<rect x="${x(e.start).toFixed(2)}" y="${y}" width="${w.toFixed(2)}" height="${row - 8}" fill="${color}" fill-opacity="${forward ? 1 : 0.45}" stroke="${forward ? "white" : color}" stroke-width="${forward ? 0.5 : 1}">${title}</rect>`,
      );
      continue;
    }
    // A fused micro-batch: a band per adapter, one outline around them.
    const band = (row - 8) / members.length;
    out.push(`<g>${title}`);
    members.forEach((a, i) => {
      out.push(`<rect x="${x(e.start).toFixed(2)}" y="${(y + i * band).toFixed(2)}" width="${w.toFixed(2)}" height="${band.toFixed(2)}" fill="${adapters[a]?.color ?? "#999"}" fill-opacity="${forward ? 1 : 0.45}"/>`);
    });
    out.push(`<rect x="${x(e.start).toFixed(2)}" y="${y}" width="${w.toFixed(2)}" height="${row - 8}" fill="none" stroke="${forward ? "white" : "#555"}" stroke-width="${forward ? 0.5 : 1}"/></g>`);
  }
  const items = [
    ...adapters.map((a) => ({ label: a.name, swatch: `fill="${a.color}"` })),
    { label: "forward", swatch: `fill="#777"` },
    { label: "backward", swatch: `fill="#777" fill-opacity="0.45" stroke="#777"` },
    { label: "optimizer step", swatch: `fill="#111"` },
  ];
  items.forEach((item, i) => {
    const lx = left + (i % 6) * 180;
    const ly = legendTop + Math.floor(i / 6) * 22;
    out.push(`<rect x="${lx}" y="${ly - 11}" width="18" height="12" ${item.swatch}/>`, `<text x="${lx + 24}" y="${ly}">${escape(item.label)}</text>`);
  });
  out.push("</svg>");
  return out.join("\n") + "\n";
}
