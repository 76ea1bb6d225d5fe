import { afterEach, describe, expect, it, vi } from "vitest";
import { clock, Progress } from "../../cli/progress.js";
import type { StepReport } from "../../runtime/run.js";

const report = (adapter: string, step: number, seconds: number): StepReport => ({
  adapter,
  step,
  steps: 4,
  loss: 2.5 - step / 10,
  lr: 1e-3,
  gradNorm: 0.5,
  tokens: 30,
  rows: 64,
  seconds,
  stages: [
    { busy: 3, wait: 1 },
    { busy: 1, wait: 1 },
  ],
});

function capture(): { text: () => string } {
  let out = "";
  vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => ((out += String(chunk)), true));
  return { text: () => out };
}
afterEach(() => vi.restoreAllMocks());

describe("progress", () => {
  it("on a terminal: a live line per adapter (step, loss, tokens/s, ETA) and one for the pipeline, redrawn in place, messages above them", () => {
    const out = capture();
    const p = new Progress(["count", "motif"], true);
    p.step(report("count", 1, 2));
    expect(out.text()).toContain("\x1b[2K  count  step 1/4  loss 2.4000  32 tokens/s  ETA 0:06\n");
    expect(out.text()).toContain("\x1b[2K  motif  waiting for its first step\n");
    expect(out.text()).toContain("\x1b[2K  pipeline  busy s0 75%  s1 50%  0:02 elapsed\n");
    p.message("  count  checkpoint 1 in out/x\n");
    // The three live lines are erased, the message printed, the lines drawn again below it.
    expect(out.text()).toContain("\x1b[3A\r\x1b[J  count  checkpoint 1 in out/x\n\x1b[2K  count  step 1/4");
    p.step(report("count", 4, 8));
    expect(out.text()).toContain("count  step 4/4  loss 2.1000  16 tokens/s  done");
    p.done();
  });

  it("elsewhere: a plain log line per step, no control sequences", () => {
    const out = capture();
    const p = new Progress(["count", "motif"], false);
    p.step(report("motif", 2, 1));
    p.message("note\n");
    expect(out.text()).toBe("  motif  step 2/4  loss 2.3000  lr 1.00e-3  grad norm 0.500\nnote\n");
  });

  it("clock", () => {
    expect([clock(0), clock(65), clock(3600 * 12 + 3)]).toEqual(["0:00", "1:05", "12:00:03"]);
  });
});
