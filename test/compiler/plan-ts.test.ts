import * as fs from "node:fs";
import * as path from "node:path";
import ts from "typescript";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { compile, planModule } from "../../compiler/index.js";
import { tempDir } from "../helpers/hf-model.js";
import { EXAMPLES, ROOT } from "../helpers/paths.js";

let dir: string;
beforeAll(() => {
  dir = tempDir("loraflow-plan-ts-");
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const compileExample = (name: string) => {
  const file = path.join(EXAMPLES, name);
  return compile(fs.readFileSync(file, "utf8"), { fileName: file }).plan!;
};

/** Type-checks files in `dir` under strict settings; the messages of every error. */
function typeErrors(files: string[]): string[] {
  const program = ts.createProgram(files, {
    strict: true,
    noEmit: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    skipLibCheck: true,
    types: [],
  });
  return ts.getPreEmitDiagnostics(program).map((d) => `${d.file ? path.basename(d.file.fileName) : ""}: ${ts.flattenDiagnosticMessageText(d.messageText, "\n")}`);
}

describe("plan.ts", () => {
  it.each(["tiny.lf", "llama2-7b-4xa6000.lf"])("%s: type-checks, names adapters as a union, and agrees with the schema's Plan type", (name) => {
    const plan = compileExample(name);
    const sub = path.join(dir, name.replace(".lf", ""));
    fs.mkdirSync(sub, { recursive: true });
    fs.writeFileSync(path.join(sub, "plan.ts"), planModule(plan, name));
    const first = plan.adapters[0]!.name;
    const schema = path.join(ROOT, "compiler", "plan", "schema.js");
    // A tool that embeds the plan: names check, a wrong name does not, and the module's Plan
    // and the schema's are the same shape (both ways, names aside).
    fs.writeFileSync(
      path.join(sub, "tool.ts"),
      `import plan, { adapterIndex, type AdapterName, type Plan } from "./plan.js";
import type { Plan as SchemaPlan } from ${JSON.stringify(schema)};
const name: AdapterName = ${JSON.stringify(first)};
// @ts-expect-error not an adapter of this plan
const wrong: AdapterName = "no_such_adapter";
export const index: number = adapterIndex[name];
export const widened: SchemaPlan = plan;
declare const fromSchema: SchemaPlan;
export const narrowed: Plan = { ...fromSchema, adapters: fromSchema.adapters.map((a) => ({ ...a, name: a.name as AdapterName })) };
export const parts: number = plan.schedule.phases[0]!.microBatches[0]!.parts.length;
void wrong;
`,
    );
    expect(typeErrors([path.join(sub, "plan.ts"), path.join(sub, "tool.ts")])).toEqual([]);
  }, 60_000);

  it("holds the same plan as plan.json", async () => {
    const plan = compileExample("llama2-7b-4xa6000.lf");
    const js = ts.transpileModule(planModule(plan, "llama2-7b-4xa6000.lf"), { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } }).outputText;
    const file = path.join(dir, "plan.mjs");
    fs.writeFileSync(file, js);
    const module = (await import(file)) as { default: unknown; plan: unknown; adapterIndex: Record<string, number> };
    expect(module.default).toEqual(plan);
    expect(module.adapterIndex).toEqual({ math: 0, code: 1, chat: 2, summarize: 3 });
  });

  it("a schema change that plan.ts cannot express is an error, not a silent any", () => {
    // Every zod node in the plan schema maps to a type: the generator throws on one it lacks.
    expect(() => planModule(compileExample("tiny.lf"), "tiny.lf")).not.toThrow();
    // (Docs may say "any"; a type may not.)
    expect(planModule(compileExample("tiny.lf"), "tiny.lf")).not.toMatch(/[:<|,(]\s*any\b|\bany\[\]/);
  });

  it("documents fields with the plan schema's descriptions", () => {
    const text = planModule(compileExample("tiny.lf"), "tiny.lf");
    expect(text).toContain("/** Optimizer steps every adapter of the phase takes in one round. */\n    readonly stepsPerRound: number;");
    expect(text).toContain("/** [first, last) over layer blocks: block b is layer floor(b/2), its attention half when b is even. */");
  });
});
