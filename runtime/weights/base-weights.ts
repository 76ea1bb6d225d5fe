import * as path from "node:path";
import { weightShapes, type Plan } from "../../compiler/index.js";
import { RunError } from "../errors.js";
import { randomFor } from "../random.js";
import { resolveInPlan } from "../plan-paths.js";
import { readSafetensors } from "./safetensors.js";

/**
 * The base weights of a plan's model as float32: read from its Hugging Face folder (converted
 * from bf16/fp16), or, for a model declared inline, drawn like Hugging Face initialises Llama
 * (normal(0, 0.02) matrices, unit norms) from the model's seed.
 */
export function loadBaseWeights(plan: Plan, planDir: string): Map<string, Float32Array> {
  const c = plan.model.config;
  const shapes = weightShapes(c);
  const out = new Map<string, Float32Array>();
  if (plan.model.folder === null) {
    let index = 0;
    for (const [name, shape] of shapes) {
      const n = shape.reduce((a, b) => a * b, 1);
      const data = new Float32Array(n);
      if (shape.length === 1) data.fill(1);
      else {
        const r = randomFor(plan.model.seed, index);
        for (let i = 0; i < n; i += 2) {
          // Box-Muller: two normals from two uniforms.
          const u = 1 - r.next();
          const v = r.next();
          const radius = 0.02 * Math.sqrt(-2 * Math.log(u));
          data[i] = radius * Math.cos(2 * Math.PI * v);
          if (i + 1 < n) data[i + 1] = radius * Math.sin(2 * Math.PI * v);
        }
      }
      out.set(name, data);
      index++;
    }
    return out;
  }
  const folder = resolveInPlan(planDir, plan.model.folder);
  if (!plan.model.weights) throw new RunError("weightsInvalid", `model ${plan.model.name}: ${folder} has no weights (the compiler warned LF3007); \`run\` needs them`);
  for (const file of plan.model.weights.files) {
    for (const [name, tensor] of readSafetensors(path.join(folder, file), (n) => shapes.has(n))) {
      const expected = shapes.get(name)!;
      if (tensor.shape.length !== expected.length || tensor.shape.some((d, i) => d !== expected[i])) {
        throw new RunError("weightsInvalid", `${path.join(folder, file)}: \`${name}\` is [${tensor.shape.join(", ")}], the plan's config implies [${expected.join(", ")}]`);
      }
      out.set(name, tensor.data);
    }
  }
  const missing = [...shapes.keys()].filter((n) => !out.has(n));
  if (missing.length > 0) throw new RunError("weightsInvalid", `${folder}: the weights lack ${missing.slice(0, 5).map((n) => `\`${n}\``).join(", ")}${missing.length > 5 ? ` and ${missing.length - 5} more` : ""}`);
  return out;
}
