import * as path from "node:path";
import { loraShapes, loraTensorProblems, peftKey, TARGET_MODULES, targetModules, type Plan, type PlanAdapter, type TargetModuleName } from "../../compiler/index.js";
import { RunError } from "../errors.js";
import { AdapterOutput, type AdapterFiles } from "../output/adapter-output.js";
import { ADAPTER_MARK } from "../output/owned.js";
import { randomFor } from "../random.js";
import { encodeSafetensors, readSafetensorsFile, type Tensor } from "./safetensors.js";

/** LoRA weights by site "LAYER.MODULE": A [r, in], B [out, r]. */
export type LoraSites = Record<string, { A: Float32Array; B: Float32Array }>;

type ModuleName = TargetModuleName;

export { peftKey };

/**
 * PEFT's initialisation: A Kaiming-uniform with a = sqrt(5) (uniform in +-1/sqrt(in)), B zero,
 * drawn per site from the adapter's seed so any stage split starts from the same weights.
 */
export function initLora(plan: Plan, adapter: PlanAdapter): LoraSites {
  const sites: LoraSites = {};
  const modules = new Map(targetModules(plan.model.config).map((m) => [m.name, m]));
  for (let l = 0; l < plan.model.config.layers; l++) {
    for (const m of adapter.targets) {
      const { in: i, out: o } = modules.get(m)!;
      const r = randomFor(adapter.seed, 0x10a, l, TARGET_MODULES.indexOf(m));
      const bound = 1 / Math.sqrt(i);
      const A = Float32Array.from({ length: adapter.rank * i }, () => (2 * r.next() - 1) * bound);
      sites[`${l}.${m}`] = { A, B: new Float32Array(o * adapter.rank) };
    }
  }
  return sites;
}

/** The first non-finite value of a tensor, as [index, value], or undefined when all are finite. */
export function firstNonFinite(data: Float32Array): [number, number] | undefined {
  for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i]!)) return [i, data[i]!];
  return undefined;
}

/**
 * Starts from a PEFT adapter folder. It must hold every site of this adapter, each [r, in] and
 * [out, r] exactly, finite, and no LoRA tensors of modules it does not train: anything else is a
 * different adapter, and training on from it would silently start from fresh weights.
 */
export function loadLora(dir: string, plan: Plan, adapter: PlanAdapter): LoraSites {
  const file = path.join(dir, "adapter_model.safetensors");
  const { tensors } = readSafetensorsFile(file, "initAdapterInvalid");
  const expected = loraShapes(plan.model.config, adapter.targets, adapter.rank);
  const problems = loraTensorProblems(expected, tensors);
  if (problems.length > 0) {
    throw new RunError("initAdapterInvalid", `${file} is not an adapter of rank ${adapter.rank} on ${adapter.targets.join(", ")}: ${problems.slice(0, 3).join("; ")}${problems.length > 3 ? `; and ${problems.length - 3} more` : ""}`);
  }
  const find = (key: string) => tensors.get(key) ?? tensors.get(key.replace(/\.weight$/, ".default.weight"))!;
  const sites: LoraSites = {};
  for (const [key, e] of expected) {
    const t = find(key);
    const bad = firstNonFinite(t.data);
    if (bad) throw new RunError("initAdapterInvalid", `${file}: \`${key}\` holds ${bad[1]} at index ${bad[0]}`);
    const site = (sites[`${e.layer}.${e.module}`] ??= { A: new Float32Array(0), B: new Float32Array(0) });
    site[e.which] = t.data;
  }
  return sites;
}

/**
 * A PEFT adapter folder's files for these weights: adapter_config.json and
 * adapter_model.safetensors in fp32, marked as loraflow's. Refuses weights that are not finite:
 * nothing NaN is ever written.
 */
export function encodeAdapter(adapter: PlanAdapter, sites: LoraSites, baseModel: string): AdapterFiles {
  const tensors = new Map<string, Tensor>();
  for (const [key, site] of Object.entries(sites)) {
    const [l, m] = key.split(".") as [string, ModuleName];
    for (const which of ["A", "B"] as const) {
      const bad = firstNonFinite(site[which]);
      if (bad) throw new RunError("diverged", `adapter "${adapter.name}": layer ${l} ${m} lora_${which} holds ${bad[1]}; nothing was written`);
    }
    tensors.set(peftKey(Number(l), m, "A"), { shape: [adapter.rank, site.A.length / adapter.rank], data: site.A });
    tensors.set(peftKey(Number(l), m, "B"), { shape: [site.B.length / adapter.rank, adapter.rank], data: site.B });
  }
  const config = {
    peft_type: "LORA",
    task_type: "CAUSAL_LM",
    r: adapter.rank,
    lora_alpha: adapter.alpha,
    lora_dropout: adapter.dropout,
    target_modules: adapter.targets,
    use_rslora: adapter.rslora,
    bias: "none",
    base_model_name_or_path: baseModel,
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    modules_to_save: null,
    layers_to_transform: null,
    revision: null,
  };
  return {
    config: JSON.stringify(config, null, 2) + "\n",
    weights: encodeSafetensors(tensors, { format: "pt", [ADAPTER_MARK.key]: ADAPTER_MARK.value }),
  };
}

/** Writes an adapter folder in one step (prepare, then finish): for tools and tests that save one adapter. */
export function writePeftAdapter(dir: string, adapter: PlanAdapter, sites: LoraSites, baseModel: string): void {
  const output = new AdapterOutput(adapter.name, dir);
  output.prepare();
  output.finish(encodeAdapter(adapter, sites, baseModel));
}
