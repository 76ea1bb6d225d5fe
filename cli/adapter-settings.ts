import * as fs from "node:fs";
import * as path from "node:path";
import { jsonSyntaxReason } from "../dsl/index.js";
import { RunError } from "../runtime/errors.js";

/** The adapter block that reproduces a PEFT adapter folder's settings, starting from its weights. */
export function adapterSettings(dir: string): string {
  const file = path.join(dir, "adapter_config.json");
  let config: Record<string, unknown>;
  try {
    config = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (e) {
    throw new RunError("initAdapterInvalid", `${file}: ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "does not exist" : `cannot be read (${e instanceof SyntaxError ? jsonSyntaxReason(e) : ((e as NodeJS.ErrnoException).code ?? (e as Error).message)})`}`);
  }
  const targets = config["target_modules"];
  if (!Array.isArray(targets) || !targets.every((t) => typeof t === "string")) {
    throw new RunError("initAdapterInvalid", `${file}: target_modules must be a list of module names (q_proj, ...)`);
  }
  const r = config["r"];
  const alpha = config["lora_alpha"] ?? r;
  if (!Number.isInteger(r) || typeof alpha !== "number") throw new RunError("initAdapterInvalid", `${file}: r and lora_alpha must be numbers`);
  return `rank ${r} alpha ${alpha} rslora ${config["use_rslora"] === true} targets ${targets.join(" ")} init ${JSON.stringify(path.resolve(dir))}`;
}
