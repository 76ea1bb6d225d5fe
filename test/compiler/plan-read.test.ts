import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { compile, readPlan, type Plan } from "../../compiler/index.js";
import { EXAMPLES } from "../helpers/paths.js";

const tiny = (): Plan => {
  const file = path.join(EXAMPLES, "tiny.lf");
  return compile(fs.readFileSync(file, "utf8"), { fileName: file }).plan!;
};

describe("readPlan refuses a plan that is not sound", () => {
  it.each([
    { name: "a layer gap between stages", edit: (p: Plan) => (p.stages[1]!.blocks = [5, 8]), expect: /does not continue from block 4/ },
    { name: "layers that disagree with blocks", edit: (p: Plan) => (p.stages[0]!.layers = [0, 3]), expect: /layers disagrees/ },
    { name: "a stage on a device the cluster lacks", edit: (p: Plan) => (p.stages[1]!.device = 7), expect: /beyond the cluster's 2 devices/ },
    { name: "the head on the wrong stage", edit: (p: Plan) => (p.stages[0]!.head = true), expect: /the head to the last/ },
    { name: "blocks that stop short", edit: (p: Plan) => (p.stages[1]!.blocks = [4, 6]), expect: /cover blocks \[0, 6\) of 8/ },
    { name: "a micro-batch index past the adapter's", edit: (p: Plan) => (p.schedule.phases[0]!.microBatches[0]!.parts[0]!.index = 9), expect: /which has 4/ },
    { name: "a dropped receive", edit: (p: Plan) => p.schedule.phases[0]!.actions[1]!.shift(), expect: /runs before RECV act mb0/ },
    { name: "a negative rank", edit: (p: Plan) => (p.adapters[0]!.rank = -1), expect: /adapters\.0\.rank/ },
    { name: "an unknown target", edit: (p: Plan) => (p.adapters[0]!.targets = ["qkv" as "q_proj"]), expect: /adapters\.0\.targets\.0/ },
    { name: "a missing schedule", edit: (p: Plan) => delete (p as Partial<Plan>).schedule, expect: /schedule: / },
  ])("$name", ({ edit, expect: pattern }) => {
    const plan = tiny();
    edit(plan);
    const reading = readPlan(JSON.stringify(plan));
    expect(reading.plan).toBeUndefined();
    expect(reading.diagnostics.map((d) => d.message).join("\n")).toMatch(pattern);
    expect(reading.diagnostics.every((d) => d.code === "LF5002")).toBe(true);
  });

  it("accepts the compiler's own plan", () => {
    expect(readPlan(JSON.stringify(tiny())).diagnostics).toEqual([]);
  });
});
