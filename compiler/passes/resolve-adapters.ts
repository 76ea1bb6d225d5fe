import * as path from "node:path";
import { didYouMean, jsonSyntaxReason } from "../../dsl/index.js";
import type { Ir, Pass, PassContext, ResolvedAdapter, ResolvedModel } from "../ir.js";
import type { AdapterSpec } from "../job.js";
import type { LlamaArch } from "../job.js";
import { loraShapes, loraTensorProblems, TARGET_GROUPS, TARGET_MODULES, targetModules, type TargetModule } from "../models/llama.js";
import { readSafetensorsHeader } from "../models/safetensors-header.js";

function countExamples(adapter: AdapterSpec & { data: string }, ctx: PassContext): number | undefined {
  const at = adapter.spans["data"] ?? adapter.span;
  const kind = ctx.host.kind(adapter.data);
  if (kind !== "file") {
    const what = kind === "dir" ? "is a folder" : kind === "other" ? "is not a regular file" : "does not exist";
    ctx.report("dataMissing", `adapter "${adapter.name}": data file ${ctx.display(adapter.data)} ${what}`, at);
    return undefined;
  }
  const lines = ctx.host.countLines(adapter.data);
  if (lines === 0) {
    ctx.report("dataMissing", `adapter "${adapter.name}": data file ${ctx.display(adapter.data)} has no examples`, at);
    return undefined;
  }
  return lines;
}

/** Text formats are tokenized with the tokenizer.json of the model (or `tokenizer`) folder: a folder without one plans, `run` refuses it. */
function checkTokenizer(adapter: AdapterSpec, model: ResolvedModel, ctx: PassContext): void {
  const at = adapter.spans["format"] ?? adapter.span;
  const where = `adapter "${adapter.name}": format ${adapter.format} is tokenized with a tokenizer.json`;
  // An inline model is for planning (and random-weight runs of `tokens` data): `run` says what
  // it lacks if asked to read text with it.
  if (model.tokenizer !== null && ctx.host.kind(path.join(model.tokenizer, "tokenizer.json")) !== "file") {
    ctx.report("noTokenizer", `${where}, which ${ctx.display(model.tokenizer)} lacks; the plan compiles, \`loraflow run\` needs it`, at);
  }
}

/** An `init` adapter must be a PEFT LoRA folder whose rank matches and whose modules we train. */
function checkInit(adapter: AdapterSpec, modules: TargetModule[] | undefined, arch: LlamaArch | undefined, ctx: PassContext): void {
  if (adapter.init === undefined) return;
  const at = adapter.spans["init"] ?? adapter.span;
  const where = `adapter "${adapter.name}": init`;
  if (ctx.host.kind(adapter.init) !== "dir") {
    ctx.report("initInvalid", `${where} folder ${ctx.display(adapter.init)} does not exist`, at);
    return;
  }
  const configPath = path.join(adapter.init, "adapter_config.json");
  let config: Record<string, unknown>;
  try {
    config = JSON.parse(ctx.host.readText(configPath)) as Record<string, unknown>;
    if (typeof config !== "object" || config === null) throw new Error("not a JSON object");
  } catch (e) {
    const missing = ctx.host.kind(configPath) !== "file";
    ctx.report("initInvalid", `${where}: ${ctx.display(configPath)} ${missing ? "does not exist" : `is not valid JSON (${jsonSyntaxReason(e)})`}`, at);
    return;
  }
  if (config["peft_type"] !== undefined && config["peft_type"] !== "LORA") {
    ctx.report("initInvalid", `${where}: peft_type is ${JSON.stringify(config["peft_type"])}, not "LORA"`, at);
  }
  if (config["r"] !== adapter.rank) {
    ctx.report("initInvalid", `${where}: the adapter has r = ${JSON.stringify(config["r"])}, this one rank ${adapter.rank}`, at);
  }
  const stored = config["target_modules"];
  if (modules && Array.isArray(stored)) {
    const ours = new Set<string>(modules.map((m) => m.name));
    const dropped = stored.filter((m) => typeof m === "string" && !ours.has(m));
    if (dropped.length > 0) {
      ctx.report("initInvalid", `${where}: the adapter also targets ${dropped.join(", ")}, which this one does not train`, at);
    }
  }
  const weightsPath = path.join(adapter.init, "adapter_model.safetensors");
  if (ctx.host.kind(weightsPath) !== "file") {
    ctx.report("initInvalid", `${where}: ${ctx.display(weightsPath)} does not exist`, at);
    return;
  }
  // The tensors themselves, from the header: every site present, shaped [r, in] and [out, r].
  const header = readSafetensorsHeader(ctx.host, weightsPath);
  if (!header.ok) {
    ctx.report("initInvalid", `${where}: ${ctx.display(weightsPath)} ${header.error}`, at);
    return;
  }
  if (!modules || !arch || config["r"] !== adapter.rank) return;
  const problems = loraTensorProblems(loraShapes(arch, modules.map((m) => m.name), adapter.rank), header.tensors);
  for (const problem of problems.slice(0, 4)) ctx.report("initInvalid", `${where}: ${ctx.display(weightsPath)}: ${problem}`, at);
  if (problems.length > 4) ctx.report("initInvalid", `${where}: ${ctx.display(weightsPath)}: and ${problems.length - 4} more tensor problems`, at);
}

function expandTargets(adapter: AdapterSpec, model: ResolvedModel, ctx: PassContext): TargetModule[] | undefined {
  const available = targetModules(model.arch);
  const chosen = new Set<string>();
  let ok = true;
  for (const target of adapter.targets) {
    // Own keys only: a target named `toString` is unknown, not Object.prototype's.
    const group = Object.hasOwn(TARGET_GROUPS, target.name) ? TARGET_GROUPS[target.name] : undefined;
    if (group) group.forEach((m) => chosen.add(m));
    else if ((TARGET_MODULES as readonly string[]).includes(target.name)) chosen.add(target.name);
    else {
      const names = [...TARGET_MODULES, ...Object.keys(TARGET_GROUPS)];
      ctx.report(
        "unknownTarget",
        `adapter "${adapter.name}": the llama model has no module \`${target.name}\`${didYouMean(target.name, names)}`,
        target.span,
      );
      ok = false;
    }
  }
  return ok ? available.filter((m) => chosen.has(m.name)) : undefined;
}

/** Data and init files, targets expanded against the model, rank and length bounds, step counts. */
export const resolveAdapters: Pass = {
  name: "resolve-adapters",
  needs: ["job"],
  run(ir, ctx) {
    const resolved: ResolvedAdapter[] = [];
    let complete = true;
    for (const adapter of ir.job!.adapters) {
      let examples: number | undefined;
      if (adapter.data !== undefined) examples = countExamples({ ...adapter, data: adapter.data }, ctx);
      // Without data and without steps the adapter was refused (LF2005): its length is unknown.
      else if ("steps" in adapter.length) {
        examples = 0;
        ctx.report("noData", `adapter "${adapter.name}" has no \`data\`: the plan compiles for planning, but \`loraflow run\` needs a data file`, adapter.span);
      }
      if (adapter.data !== undefined && adapter.format !== "tokens" && ir.model) checkTokenizer(adapter, ir.model, ctx);
      const modules = ir.model ? expandTargets(adapter, ir.model, ctx) : undefined;
      checkInit(adapter, modules, ir.model?.arch, ctx);
      if (!ir.model || !modules || examples === undefined) {
        complete = false;
        continue;
      }
      // The tightest target bounds the rank: name it, so the message says the largest rank allowed.
      const tightest = modules.reduce((a, b) => (Math.min(b.in, b.out) < Math.min(a.in, a.out) ? b : a));
      const bound = Math.min(tightest.in, tightest.out);
      if (adapter.rank > bound) {
        ctx.report("rankBounds", `adapter "${adapter.name}": rank ${adapter.rank} exceeds min(in, out) = ${bound} of ${tightest.name}`, adapter.spans["rank"] ?? adapter.span);
        complete = false;
      }
      // An unwritten seq_len defaults to 512, or the model's max_seq when that is shorter.
      const seqLen = adapter.spans["seq_len"] ? adapter.seqLen : Math.min(adapter.seqLen, ir.model.arch.maxSeq);
      if (seqLen > ir.model.arch.maxSeq) {
        ctx.report(
          "seqLenTooLong",
          `adapter "${adapter.name}": seq_len ${adapter.seqLen} is above the model's max_seq ${ir.model.arch.maxSeq}`,
          adapter.spans["seq_len"] ?? adapter.span,
        );
      }
      const steps = "steps" in adapter.length ? adapter.length.steps : Math.ceil((examples * adapter.length.epochs) / adapter.batch);
      resolved.push({
        ...adapter,
        data: adapter.data ?? null,
        seqLen,
        modules,
        examples,
        steps,
        microBatchesPerStep: Math.max(1, Math.floor(adapter.batch / adapter.microBatch)),
        scaling: adapter.rslora ? adapter.alpha / Math.sqrt(adapter.rank) : adapter.alpha / adapter.rank,
      });
    }
    return complete ? { ...ir, adapters: resolved } : ir;
  },
};
