import * as path from "node:path";
import { jsonSyntaxReason } from "../../dsl/index.js";
import type { CompileHost } from "../host.js";
import { readSafetensorsHeader, type TensorHeader } from "./safetensors-header.js";

/** Where a model's weights are, as the plan records them (paths relative to the model folder). */
export interface WeightsInfo {
  format: "safetensors";
  /** The shard index, when the weights are sharded. */
  index: string | null;
  files: string[];
  /** Base weights by dtype, as stored. */
  dtypes: string[];
}

export interface WeightsReading {
  info: WeightsInfo | null;
  tensors: Map<string, TensorHeader & { file: string }>;
  /** Messages about files that cannot be read or that contradict each other. */
  unreadable: string[];
}

const INDEX = "model.safetensors.index.json";

/** Finds and reads the safetensors headers of a Hugging Face folder: an index with shards, or single files. */
export function readWeights(host: CompileHost, folder: string): WeightsReading {
  const reading: WeightsReading = { info: null, tensors: new Map(), unreadable: [] };
  let files: string[];
  let index: string | null = null;
  let weightMap: Record<string, string> | null = null;

  if (host.kind(path.join(folder, INDEX)) === "file") {
    index = INDEX;
    let parsed: unknown;
    try {
      parsed = JSON.parse(host.readText(path.join(folder, INDEX)));
    } catch (e) {
      reading.unreadable.push(`${INDEX} is not valid JSON (${jsonSyntaxReason(e)})`);
      return reading;
    }
    const map = (parsed as { weight_map?: unknown } | null)?.weight_map;
    if (typeof map !== "object" || map === null || Array.isArray(map) || !Object.values(map).every((f) => typeof f === "string")) {
      reading.unreadable.push(`${INDEX} has no \`weight_map\` of tensor names to file names`);
      return reading;
    }
    weightMap = map as Record<string, string>;
    files = [...new Set(Object.values(weightMap))].sort();
  } else {
    files = host.listDir(folder).filter((f) => f.endsWith(".safetensors")).sort();
    if (files.length > 1 && files.some((f) => /-of-\d+\.safetensors$/.test(f))) {
      reading.unreadable.push(`the folder holds shards (${files[0]}, ...) but no ${INDEX}`);
      return reading;
    }
  }
  if (files.length === 0) return reading;

  const dtypes = new Set<string>();
  for (const file of files) {
    const full = path.join(folder, file);
    if (path.dirname(path.resolve(full)) !== path.resolve(folder)) {
      reading.unreadable.push(`${INDEX} names ${JSON.stringify(file)}, outside the model folder`);
      continue;
    }
    const kind = host.kind(full);
    if (kind !== "file") {
      reading.unreadable.push(`${index ?? "the folder"} names ${file}, which ${kind === undefined ? "does not exist" : "is not a regular file"}`);
      continue;
    }
    const header = readSafetensorsHeader(host, full);
    if (!header.ok) {
      reading.unreadable.push(`${file} ${header.error}`);
      continue;
    }
    for (const [name, tensor] of header.tensors) {
      if (weightMap && weightMap[name] !== undefined && weightMap[name] !== file) continue;
      const earlier = reading.tensors.get(name);
      if (earlier) {
        reading.unreadable.push(`tensor \`${name}\` is in both ${earlier.file} and ${file}`);
        continue;
      }
      reading.tensors.set(name, { ...tensor, file });
      dtypes.add(tensor.dtype);
    }
  }
  if (weightMap) {
    for (const [name, file] of Object.entries(weightMap)) {
      if (!reading.tensors.has(name) && files.includes(file) && host.kind(path.join(folder, file)) === "file") {
        reading.unreadable.push(`${INDEX} puts \`${name}\` in ${file}, whose header lacks it`);
      }
    }
  }
  reading.info = { format: "safetensors", index, files, dtypes: [...dtypes].sort() };
  return reading;
}

/** The dtypes `loraflow run` converts on load. */
export const LOADABLE_DTYPES = new Set(["F32", "F16", "BF16"]);

/** Expected weights against stored ones: missing tensors, wrong shapes, dtypes the engine cannot load. */
export function weightProblems(expected: Map<string, number[]>, stored: WeightsReading["tensors"]): string[] {
  const problems: string[] = [];
  for (const [name, shape] of expected) {
    const tensor = stored.get(name);
    if (!tensor) {
      problems.push(`\`${name}\` is missing`);
      continue;
    }
    if (tensor.shape.length !== shape.length || tensor.shape.some((d, i) => d !== shape[i])) {
      problems.push(`\`${name}\` in ${tensor.file} is [${tensor.shape.join(", ")}], config.json implies [${shape.join(", ")}]`);
    }
    if (!LOADABLE_DTYPES.has(tensor.dtype)) problems.push(`\`${name}\` in ${tensor.file} is ${tensor.dtype}; loraflow loads F32, F16 and BF16`);
  }
  return problems;
}
