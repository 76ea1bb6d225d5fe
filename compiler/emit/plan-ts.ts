import { createRequire } from "node:module";
import type * as TsMorph from "ts-morph";
import type { z } from "zod";
import { formatPlanJson } from "../plan/format.js";
import { AdapterSchema, LlamaConfigSchema, OptimizerSchema, PhaseSchema, PlanSchema, StageSchema, type Plan } from "../plan/schema.js";

type Schema = z.ZodType;
interface Def {
  type: string;
  innerType?: Schema;
  element?: Schema;
  items?: Schema[];
  entries?: Record<string, string>;
  values?: unknown[];
  shape?: Record<string, Schema>;
  valueType?: Schema;
  keyType?: Schema;
}
const defOf = (s: Schema) => (s as unknown as { _zod: { def: Def } })._zod.def;

/** Schemas that become named interfaces in plan.ts, so that tools can name the pieces too. */
const NAMED = new Map<Schema, string>([
  [LlamaConfigSchema, "LlamaConfig"],
  [OptimizerSchema, "Optimizer"],
  [AdapterSchema, "Adapter"],
  [StageSchema, "Stage"],
  [PhaseSchema, "Phase"],
  [PlanSchema, "Plan"],
]);

/** Where the plan's types are narrower than the schema's: an adapter's name is one of this plan's. */
const NARROWED: Record<string, string> = { "Adapter.name": "AdapterName" };

/**
 * A zod schema as TypeScript type text. Objects become type literals (or the name of an
 * interface in NAMED); `path` finds the properties NARROWED overrides.
 */
function typeText(schema: Schema, path: string, top = false): string {
  const named = NAMED.get(schema);
  if (named && !top) return named;
  const def = defOf(schema);
  switch (def.type) {
    case "string":
      return "string";
    case "number":
      return "number";
    case "boolean":
      return "boolean";
    case "unknown":
      return "unknown";
    case "literal":
      return def.values!.map((v) => JSON.stringify(v)).join(" | ");
    case "enum":
      return Object.values(def.entries!).map((v) => JSON.stringify(v)).join(" | ");
    case "nullable":
      return `${typeText(def.innerType!, path)} | null`;
    case "optional":
      return typeText(def.innerType!, path);
    case "array": {
      const inner = typeText(def.element!, path);
      return /[|&]/.test(inner) && !inner.startsWith("{") ? `(${inner})[]` : `${inner}[]`;
    }
    case "tuple":
      return `[${def.items!.map((i) => typeText(i, path)).join(", ")}]`;
    case "record":
      return `Record<${typeText(def.keyType!, path)}, ${typeText(def.valueType!, path)}>`;
    case "object": {
      const props = Object.entries(def.shape!).map(([k, v]) => `${k}${defOf(v).type === "optional" ? "?" : ""}: ${NARROWED[`${path}.${k}`] ?? typeText(v, `${path}.${k}`)}`);
      return `{ ${props.join("; ")} }`;
    }
    default:
      throw new Error(`plan.ts: no TypeScript for a zod ${def.type}`);
  }
}

/** A schema's `.describe()` text, looking through optional and nullable wrappers. */
function description(schema: Schema): string | undefined {
  const own = (schema as unknown as { description?: string }).description;
  if (own !== undefined) return own;
  const inner = defOf(schema).innerType;
  return inner ? description(inner) : undefined;
}

/** An interface's properties from an object schema, each with the schema's description as its doc. */
function properties(schema: Schema, name: string) {
  return Object.entries(defOf(schema).shape!).map(([k, v]) => {
    const doc = description(v);
    return {
      name: k,
      hasQuestionToken: defOf(v).type === "optional",
      isReadonly: true,
      type: NARROWED[`${name}.${k}`] ?? typeText(v, `${name}.${k}`),
      ...(doc !== undefined && { docs: [doc.charAt(0).toUpperCase() + doc.slice(1) + "."] }),
    };
  });
}

/**
 * plan.ts: the plan as a typed module for tools that embed loraflow. The types come from the
 * plan schema itself (so they cannot drift from plan.json's), narrowed to this plan where that
 * helps: adapter names are a union, and `adapterIndex` maps each name to its index.
 */
export function planModule(plan: Plan, source: string): string {
  // ts-morph carries a whole TypeScript compiler: loaded when a plan.ts is written, not whenever
  // the compiler is imported (that would add half a second to every `loraflow` command).
  const { Project, VariableDeclarationKind } = createRequire(import.meta.url)("ts-morph") as typeof TsMorph;
  const project = new Project({ useInMemoryFileSystem: true });
  const file = project.createSourceFile("plan.ts", "");
  file.addStatements(`// Written by loraflow ${plan.compiler.version} from ${source}; the same plan as plan.json. Do not edit: compile again.`);
  file.addTypeAlias({ name: "AdapterName", isExported: true, type: plan.adapters.map((a) => JSON.stringify(a.name)).join(" | ") });
  for (const [schema, name] of NAMED) file.addInterface({ name, isExported: true, properties: properties(schema, name) });
  file.addVariableStatement({
    isExported: true,
    declarationKind: VariableDeclarationKind.Const,
    declarations: [
      {
        name: "adapterIndex",
        type: "Readonly<Record<AdapterName, number>>",
        initializer: `{ ${plan.adapters.map((a, i) => `${JSON.stringify(a.name)}: ${i}`).join(", ")} }`,
      },
    ],
  });
  file.addVariableStatement({
    isExported: true,
    declarationKind: VariableDeclarationKind.Const,
    declarations: [{ name: "plan", type: "Plan", initializer: formatPlanJson(plan).trimEnd() }],
  });
  file.addExportAssignment({ isExportEquals: false, expression: "plan" });
  return file.getFullText();
}
