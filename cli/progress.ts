import type { StepReport } from "../runtime/run.js";
import { print, printLive } from "./output.js";

/** "1:05", "12:00:03": a duration for an ETA. */
export function clock(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  const two = (n: number) => String(n).padStart(2, "0");
  return h > 0 ? `${h}:${two(m)}:${two(r)}` : `${m}:${two(r)}`;
}

interface AdapterLine {
  step: number;
  steps: number;
  loss: number;
  tokens: number;
  seconds: number;
}

/**
 * How `loraflow run` shows its progress. On a terminal: a live line per adapter (step/total, loss,
 * tokens/s, ETA) and one for the pipeline (each stage's utilisation so far), redrawn in place at
 * most ten times a second; other messages are printed above them. Elsewhere (a pipe, a file, CI):
 * a plain line per step, as a log.
 */
export class Progress {
  private readonly lines = new Map<string, AdapterLine>();
  private stages: StepReport["stages"] = [];
  private elapsed = 0;
  private drawn = 0;
  private lastDraw = 0;

  constructor(
    private readonly names: string[],
    // Live lines on a terminal; a log line per step anywhere else.
    private readonly live: boolean = process.stdout.isTTY === true && process.env["TERM"] !== "dumb",
  ) {}

  private get width(): number {
    return Math.max(...this.names.map((n) => n.length));
  }

  step(s: StepReport): void {
    if (!this.live) {
      print(`  ${s.adapter.padEnd(this.width)}  step ${String(s.step).padStart(String(s.steps).length)}/${s.steps}  loss ${s.loss.toFixed(4)}  lr ${s.lr.toExponential(2)}  grad norm ${s.gradNorm.toFixed(3)}\n`);
      return;
    }
    const line = this.lines.get(s.adapter) ?? { step: 0, steps: s.steps, loss: NaN, tokens: 0, seconds: 0 };
    this.lines.set(s.adapter, { step: s.step, steps: s.steps, loss: s.loss, tokens: line.tokens + s.rows, seconds: s.seconds });
    this.stages = s.stages;
    this.elapsed = s.seconds;
    const now = performance.now();
    if (now - this.lastDraw >= 100 || s.step === s.steps) this.draw(now);
  }

  /** A message that must not be drawn over: printed above the live lines, which follow it again. */
  message(text: string): void {
    if (!this.live) {
      print(text);
      return;
    }
    this.erase();
    print(text);
    this.draw(performance.now());
  }

  /** Leaves the last state of the live lines on the terminal. */
  done(): void {
    if (this.live && this.drawn > 0) this.draw(performance.now());
    this.drawn = 0;
  }

  private erase(): void {
    if (this.drawn === 0) return;
    printLive([{ control: `\x1b[${this.drawn}A\r\x1b[J` }]);
    this.drawn = 0;
  }

  private draw(now: number): void {
    this.erase();
    const rows: string[] = [];
    for (const name of this.names) {
      const l = this.lines.get(name);
      if (!l) {
        rows.push(`  ${name.padEnd(this.width)}  waiting for its first step`);
        continue;
      }
      const rate = l.seconds > 0 ? l.tokens / l.seconds : 0;
      const eta = l.step > 0 ? (l.seconds / l.step) * (l.steps - l.step) : 0;
      rows.push(`  ${name.padEnd(this.width)}  step ${String(l.step).padStart(String(l.steps).length)}/${l.steps}  loss ${l.loss.toFixed(4)}  ${Math.round(rate)} tokens/s  ${l.step === l.steps ? "done" : `ETA ${clock(eta)}`}`);
    }
    const use = this.stages.map((s, i) => `s${i} ${s.busy + s.wait > 0 ? Math.round((100 * s.busy) / (s.busy + s.wait)) : 0}%`);
    rows.push(`  ${"pipeline".padEnd(this.width)}  busy ${use.join("  ")}  ${clock(this.elapsed)} elapsed`);
    printLive(rows.map((text) => ({ control: "\x1b[2K", text: text + "\n" })));
    this.drawn = rows.length;
    this.lastDraw = now;
  }
}
