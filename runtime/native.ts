import * as fs from "node:fs";
import { createRequire } from "node:module";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

/** What the C++ engine exports (native/src/binding). */
export interface NativeEngine {
  build: { blas: "openblas" | "portable"; compiler: string };
  /** One operator in double precision: its output and, given `dout`, its input gradients. */
  op(
    name: string,
    params: Record<string, number>,
    inputs: Record<string, Float64Array | Int32Array | BigUint64Array>,
    dout?: Float64Array,
  ): { out: Float64Array; grads: Record<string, Float64Array> };
}

let cached: NativeEngine | undefined;

/** The package root: the folder above this file (source or built) that holds package.json. */
function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!fs.existsSync(path.join(dir, "package.json"))) {
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error("loraflow: cannot find the package folder");
    dir = parent;
  }
  return dir;
}

/** Loads the addon `npm ci` built (cmake-js, build/Release/loraflow_native.node). */
export function loadNative(): NativeEngine {
  if (cached) return cached;
  const file = path.join(packageRoot(), "build", "Release", "loraflow_native.node");
  if (!fs.existsSync(file)) {
    throw new Error(`loraflow's native engine is not built (${file} is missing): run \`npm ci\` or \`npm run build:native\` (needs cmake and a C++17 compiler)`);
  }
  cached = createRequire(import.meta.url)(file) as NativeEngine;
  return cached;
}
