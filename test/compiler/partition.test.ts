import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { ResolvedAdapter } from "../../compiler/ir.js";
import { fillFactor } from "../../compiler/passes/partition.js";
import { compile, type Plan } from "../../compiler/index.js";
import { balance, stageSeconds, type BalanceProblem } from "../../compiler/partition/balance.js";

/** Every way to cut B blocks into p non-empty runs. */
function* cutsOf(B: number, p: number, from = 0): Generator<number[]> {
  if (p === 1) {
    yield [from, B];
    return;
  }
  for (let c = from + 1; c <= B - (p - 1); c++) for (const rest of cutsOf(B, p - 1, c)) yield [from, ...rest];
}

function bruteForce(problem: BalanceProblem): number {
  const B = problem.blockSeconds.length;
  const prefix = [0];
  for (const c of problem.blockSeconds) prefix.push(prefix[prefix.length - 1]! + c);
  let best = Infinity;
  for (const cuts of cutsOf(B, problem.stages)) {
    let worst = 0;
    let fits = true;
    for (let s = 0; s < problem.stages; s++) {
      worst = Math.max(worst, stageSeconds(problem, prefix, cuts[s]!, cuts[s + 1]!, s));
      if (problem.memory(cuts[s]!, cuts[s + 1]!, s, problem.stages) > problem.capacity) fits = false;
    }
    if (fits) best = Math.min(best, worst);
  }
  return best;
}

describe("balanced partition", () => {
  it("finds brute force's bottleneck on 20 random small cases (memory included)", () => {
    fc.assert(
      fc.property(
        fc.array(fc.double({ min: 0.1, max: 5, noNaN: true }), { minLength: 2, maxLength: 9 }),
        fc.integer({ min: 1, max: 4 }),
        fc.double({ min: 0, max: 4, noNaN: true }),
        fc.array(fc.double({ min: 1, max: 10, noNaN: true }), { minLength: 9, maxLength: 9 }),
        fc.double({ min: 5, max: 40, noNaN: true }),
        (costs, p, head, sizes, capacity) => {
          const stages = Math.min(p, costs.length);
          const problem: BalanceProblem = {
            blockSeconds: costs,
            embeddingSeconds: 0.5,
            headSeconds: head,
            stages,
            // Earlier stages hold more in flight, as in 1F1B.
            memory: (a, b, s, n) => sizes.slice(a, b).reduce((x, y) => x + y, 0) * (1 + 0.25 * (n - s - 1)),
            capacity,
          };
          const expected = bruteForce(problem);
          const got = balance(problem);
          if (expected === Infinity) expect(got).toBeUndefined();
          else {
            expect(got!.bottleneckSeconds).toBeCloseTo(expected, 12);
            expect(got!.cuts[0]).toBe(0);
            expect(got!.cuts[stages]).toBe(costs.length);
          }
        },
      ),
      { numRuns: 20 },
    );
  });
});

const job = (layers: number, stages: number | "auto", gpus: number, vocab = 64) => `
model m { layers ${layers} hidden 256 heads 4 ffn 512 vocab ${vocab} }
adapter a { data "data/math.jsonl" seq_len 128 batch 8 micro_batch 2 steps 1 }
cluster c { gpu A6000 gpus ${gpus} }
plan { stages ${stages} }`;

function plan(source: string): Plan {
  const result = compile(source, { baseDir: "examples" });
  expect(result.diagnostics).toEqual([]);
  return result.plan!;
}

describe("partition pass", () => {
  it.each([
    [32, 4],
    [10, 4],
    [5, 5],
    [7, 1],
    [80, 3],
  ])("%i layers over %i stages: contiguous blocks covering the model, first embeds, last heads", (layers, stages) => {
    const p = plan(job(layers, stages, 8));
    expect(p.stages).toHaveLength(stages);
    expect(p.stages[0]!.blocks[0]).toBe(0);
    expect(p.stages[stages - 1]!.blocks[1]).toBe(2 * layers);
    p.stages.forEach((s, i) => {
      if (i > 0) expect(s.blocks[0]).toBe(p.stages[i - 1]!.blocks[1]);
      expect(s.blocks[1]).toBeGreaterThan(s.blocks[0]);
      expect([s.embedding, s.head]).toEqual([i === 0, i === stages - 1]);
    });
  });

  it("equal layers and a negligible head: an even split", () => {
    expect(plan(job(32, 4, 4, 16)).stages.map((s) => s.layers)).toEqual([
      [0, 8],
      [8, 16],
      [16, 24],
      [24, 32],
    ]);
  });

  it("a heavy head takes layers off the last stage", () => {
    const p = plan(job(16, 4, 4, 256000));
    const count = (s: Plan["stages"][number]) => s.blocks[1] - s.blocks[0];
    expect(count(p.stages[3]!)).toBeLessThan(count(p.stages[0]!));
  });

  it("the split balances the whole job: a briefly trained heavy adapter moves it less than a long one", () => {
    // Adapter `long` is light (rank 4 on q, seq 128); `heavy` (rank 128 on every module, seq 1024)
    // pulls work towards the MLP-heavy end of each layer only as much as it trains.
    const heavy = (steps: number) => `
model m { layers 16 hidden 512 heads 8 ffn 4096 vocab 32000 }
adapter long { data "data/math.jsonl" rank 4 targets q_proj seq_len 128 batch 4 micro_batch 1 steps 1000 }
adapter heavy { data "data/math.jsonl" rank 128 targets all seq_len 1024 batch 4 micro_batch 1 steps ${steps} }
cluster c { gpu A6000 gpus 4 }
plan { schedule 1f1b stages 4 }`;
    const split = (steps: number) => {
      const r = compile(heavy(steps), { baseDir: "examples" });
      return { blocks: r.plan!.stages.map((s) => s.blocks), imbalance: r.summary!.imbalance };
    };
    const brief = split(1);
    const long = split(1000);
    expect(brief.blocks).not.toEqual(long.blocks);
    // Each split is balanced for the job it serves, to within a block (an MLP half is 8% of a stage).
    expect(brief.imbalance).toBeLessThan(0.08);
    expect(long.imbalance).toBeLessThan(0.08);
  });

  it("stages auto judges each count by the schedule that will run: an interleaved stream has no bubble to fear", () => {
    // Eight adapters of one micro-batch per step: a flushing schedule gains nothing from stages
    // (m = 1), an interleaved one gains nearly p-fold.
    const source = (stages: number | "auto") => `
model m { layers 32 hidden 4096 heads 32 ffn 11008 vocab 32000 max_seq 512 }
${Array.from({ length: 8 }, (_, i) => `adapter a${i} { data "data/math.jsonl" rank 16 targets all seq_len 512 batch 2 micro_batch 2 steps 100 }`).join("\n")}
cluster c { gpu A100-80G gpus 8 }
plan { schedule auto stages ${stages} }`;
    const makespan = (stages: number | "auto") => compile(source(stages), { baseDir: "examples" }).summary!.makespanSeconds;
    const auto = compile(source("auto"), { baseDir: "examples" });
    expect(auto.plan!.stages).toHaveLength(8);
    const best = Math.min(...[1, 2, 4, 8].map(makespan));
    expect(auto.summary!.makespanSeconds).toBeLessThanOrEqual(best * 1.0001);
    expect(makespan(1) / auto.summary!.makespanSeconds).toBeGreaterThan(5);
  });

  it.each([
    { schedule: "1f1b", m: [4, 4], p: 4, factor: (8 + 2 * 3) / 8 },
    { schedule: "batch", m: [4, 2], p: 4, factor: 7 / 4 },
    { schedule: "mlora", m: [4, 4], p: 4, factor: (256 + 3) / 256 }, // a round holds at most MAX_STREAM
    { schedule: "mlora", m: [1, 1], p: 4, factor: (2 + 3) / 2 },
    { schedule: "auto", m: [4], p: 4, factor: 7 / 4 },
  ] as const)("fill factor: $schedule, micro-batches $m, p = $p", ({ schedule, m, p, factor }) => {
    const adapters = m.map((n, index) => ({ index, microBatchesPerStep: n, steps: 100 }) as ResolvedAdapter);
    expect(fillFactor(schedule, adapters, p)).toBeCloseTo(factor, 12);
  });

  it("stages auto picks a count no larger than the devices, and the override wins", () => {
    const auto = plan(job(32, "auto", 8));
    expect(auto.stages.length).toBeGreaterThanOrEqual(1);
    expect(auto.stages.length).toBeLessThanOrEqual(8);
    expect(compile(job(32, 1, 8), { baseDir: "examples", stages: 2 }).plan!.stages).toHaveLength(2);
  });

  it("devices count across nodes, and stages know their node", () => {
    const p = plan(job(8, 4, 2).replace("gpus 2", "gpus 2 nodes 2"));
    expect(p.stages.map((s) => [s.device, s.node])).toEqual([
      [0, 0],
      [1, 0],
      [2, 1],
      [3, 1],
    ]);
  });
});
