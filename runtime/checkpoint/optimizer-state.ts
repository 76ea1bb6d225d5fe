import { peftKey, type PlanAdapter, type TargetModuleName } from "../../compiler/index.js";
import { RunError } from "../errors.js";
import { OPTIMIZER_MARK } from "../output/owned.js";
import { readSafetensorsFile, encodeSafetensors, type Tensor } from "../weights/safetensors.js";
import type { LoraSites } from "../weights/lora.js";

/** An adapter's optimizer moments by site "LAYER.MODULE": [moments, |A| + |B|], A's values then B's. */
export type SiteMoments = Record<string, Float32Array>;

/** PyTorch's names for an optimizer's per-parameter state: AdamW's two moments, SGD's momentum. */
export function momentNames(adapter: PlanAdapter): string[] {
  if (adapter.optimizer.kind === "adamw") return ["exp_avg", "exp_avg_sq"];
  return adapter.optimizer.momentum !== 0 ? ["momentum_buffer"] : [];
}

/**
 * optimizer.safetensors: each LoRA tensor's moments under its PEFT key plus the moment's PyTorch
 * name (`...lora_A.weight.exp_avg`), fp32, shaped like the tensor; the step in the metadata.
 */
export function encodeOptimizerState(adapter: PlanAdapter, sites: LoraSites, moments: SiteMoments, step: number): Uint8Array {
  const names = momentNames(adapter);
  const tensors = new Map<string, Tensor>();
  // Plain SGD keeps no state: the file holds none.
  for (const [key, site] of names.length === 0 ? [] : Object.entries(sites)) {
    const [l, m] = key.split(".") as [string, TargetModuleName];
    const n = site.A.length + site.B.length;
    const values = moments[key];
    if (values === undefined || values.length !== names.length * n) throw new Error(`adapter "${adapter.name}": site ${key} has ${values?.length ?? 0} moment values, expected ${names.length * n}`);
    names.forEach((name, k) => {
      tensors.set(`${peftKey(Number(l), m, "A")}.${name}`, { shape: [adapter.rank, site.A.length / adapter.rank], data: values.subarray(k * n, k * n + site.A.length) });
      tensors.set(`${peftKey(Number(l), m, "B")}.${name}`, { shape: [site.B.length / adapter.rank, adapter.rank], data: values.subarray(k * n + site.A.length, (k + 1) * n) });
    });
  }
  return encodeSafetensors(tensors, { format: "pt", [OPTIMIZER_MARK.key]: OPTIMIZER_MARK.value, optimizer: adapter.optimizer.kind, step: String(step) });
}

/** Reads optimizer.safetensors back into moments for these sites, every tensor present and shaped as written. */
export function decodeOptimizerState(file: string, adapter: PlanAdapter, sites: LoraSites): SiteMoments {
  const names = momentNames(adapter);
  const { tensors, metadata } = readSafetensorsFile(file, "resumeInvalid");
  if (metadata[OPTIMIZER_MARK.key] !== OPTIMIZER_MARK.value || metadata["optimizer"] !== adapter.optimizer.kind) {
    throw new RunError("resumeInvalid", `${file} is not loraflow's ${adapter.optimizer.kind} state of adapter "${adapter.name}"`);
  }
  const moments: SiteMoments = {};
  if (names.length === 0) return moments;
  for (const [key, site] of Object.entries(sites)) {
    const [l, m] = key.split(".") as [string, TargetModuleName];
    const n = site.A.length + site.B.length;
    const values = new Float32Array(names.length * n);
    names.forEach((name, k) => {
      for (const [which, offset, length] of [["A", 0, site.A.length], ["B", site.A.length, site.B.length]] as const) {
        const tensorName = `${peftKey(Number(l), m, which)}.${name}`;
        const t = tensors.get(tensorName);
        if (t === undefined || t.data.length !== length) throw new RunError("resumeInvalid", `${file}: \`${tensorName}\` is ${t === undefined ? "missing" : `${t.data.length} values, expected ${length}`}`);
        values.set(t.data, k * n + offset);
      }
    });
    moments[key] = values;
  }
  return moments;
}
