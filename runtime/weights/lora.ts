import * as fs from "node:fs";
import * as path from "node:path";
import { MODULE_PARENT, TARGET_MODULES, targetModules, type Plan, type PlanAdapter, type TargetModuleName } from "../../compiler/index.js";
import { RunError } from "../errors.js";
import { randomFor } from "../random.js";
import { encodeSafetensors, readSafetensors, type Tensor } from "./safetensors.js";

/** LoRA weights by site "LAYER.MODULE": A [r, in], B [out, r]. */
export type LoraSites = Record<string, { A: Float32Array; B: Float32Array }>;

type ModuleName = TargetModuleName;

export function peftKey(layer: number, module: ModuleName, which: "A" | "B"): string {
  return `base_model.model.model.layers.${layer}.${MODULE_PARENT[module]}.${module}.lora_${which}.weight`;
}

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

/** Starts from a PEFT adapter folder: its sites replace the fresh ones; shapes must match. */
export function loadLora(dir: string, plan: Plan, adapter: PlanAdapter): LoraSites {
  const sites = initLora(plan, adapter);
  const file = path.join(dir, "adapter_model.safetensors");
  const tensors = readSafetensors(file);
  const find = (layer: number, m: ModuleName, which: "A" | "B") =>
    tensors.get(peftKey(layer, m, which)) ?? tensors.get(peftKey(layer, m, which).replace(".weight", ".default.weight"));
  for (const [key, site] of Object.entries(sites)) {
    const [l, m] = key.split(".") as [string, ModuleName];
    const A = find(Number(l), m, "A");
    const B = find(Number(l), m, "B");
    if (!A || !B) continue;
    if (A.data.length !== site.A.length || B.data.length !== site.B.length) {
      throw new RunError(`${file}: layer ${l} ${m} is [${A.shape.join(", ")}] x [${B.shape.join(", ")}], adapter "${adapter.name}" needs rank ${adapter.rank}`);
    }
    sites[key] = { A: A.data, B: B.data };
  }
  return sites;
}

/**
 * Writes a PEFT adapter folder (adapter_config.json, adapter_model.safetensors in fp32) all at
 * once: into a fresh sibling folder first, then renamed over `dir`, so an interrupted save never
 * leaves a half-written adapter where a good one was. Checkpoint folders inside `dir` are kept.
 */
export function writePeftAdapter(dir: string, adapter: PlanAdapter, sites: LoraSites, baseModel: string): void {
  const tensors = new Map<string, Tensor>();
  for (const [key, site] of Object.entries(sites)) {
    const [l, m] = key.split(".") as [string, ModuleName];
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
  const parent = path.dirname(path.resolve(dir));
  fs.mkdirSync(parent, { recursive: true });
  const staging = fs.mkdtempSync(path.join(parent, `.${path.basename(dir)}.`));
  fs.chmodSync(staging, 0o755);
  try {
    fs.writeFileSync(path.join(staging, "adapter_config.json"), JSON.stringify(config, null, 2) + "\n");
    fs.writeFileSync(path.join(staging, "adapter_model.safetensors"), encodeSafetensors(tensors, { format: "pt" }));
    const old = fs.existsSync(dir) ? `${staging}.old` : null;
    if (old) {
      // Checkpoints written during the run live inside the adapter folder: carry them over.
      for (const entry of fs.readdirSync(dir)) {
        if (entry.startsWith("checkpoint-")) fs.renameSync(path.join(dir, entry), path.join(staging, entry));
      }
      fs.renameSync(dir, old);
    }
    fs.renameSync(staging, dir);
    if (old) fs.rmSync(old, { recursive: true, force: true });
  } catch (e) {
    fs.rmSync(staging, { recursive: true, force: true });
    throw e;
  }
}
