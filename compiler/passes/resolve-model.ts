import * as path from "node:path";
import { jsonSyntaxReason, type Span } from "../../dsl/index.js";
import type { Ir, Pass, PassContext, ResolvedModel } from "../ir.js";
import type { LlamaArch, ModelSpec } from "../job.js";
import { archProblems, JOB_KEYS, LLAMA_DEFAULTS, readLlamaConfig, weightShapes } from "../models/llama.js";
import { readWeights, weightProblems, type WeightsInfo } from "../models/weights.js";

/** Past this many, weight problems are summarised: one wrong config gives thousands. */
const MAX_WEIGHT_REPORTS = 8;

function readConfig(model: ModelSpec, ctx: PassContext, at: Span): { arch: Partial<LlamaArch>; dtype?: ModelSpec["dtype"] } | undefined {
  const folder = model.from!;
  const kind = ctx.host.kind(folder);
  if (kind !== "dir") {
    ctx.report("modelFolderMissing", `model folder ${ctx.display(folder)} ${kind === "file" ? "is a file, not a folder" : "does not exist"}`, at);
    return undefined;
  }
  const configPath = path.join(folder, "config.json");
  const configKind = ctx.host.kind(configPath);
  if (configKind !== "file") {
    ctx.report("configUnreadable", `${ctx.display(configPath)} ${configKind === undefined ? "does not exist" : "is not a regular file"}`, at);
    return undefined;
  }
  let json: unknown;
  try {
    json = JSON.parse(ctx.host.readText(configPath));
  } catch (e) {
    ctx.report("configUnreadable", `${ctx.display(configPath)} is not valid JSON (${jsonSyntaxReason(e)})`, at);
    return undefined;
  }
  const reading = readLlamaConfig(json);
  for (const problem of reading.problems) ctx.report("configInvalid", `${ctx.display(configPath)}: ${problem}`, at);
  for (const feature of reading.unsupported) ctx.report("unsupportedArch", `${ctx.display(configPath)}: unsupported ${feature}`, at);
  const out: { arch: Partial<LlamaArch>; dtype?: ModelSpec["dtype"] } = { arch: reading.arch };
  if (reading.dtype) out.dtype = reading.dtype;
  return out;
}

/** config.json (when `from` is given) merged with the inline architecture, defaults filled, checked. */
function resolveArch(model: ModelSpec, ctx: PassContext): { arch: LlamaArch; dtype: ModelSpec["dtype"] } | undefined {
  const fromSpan = model.spans["from"] ?? model.span;
  let fromConfig: Partial<LlamaArch> = {};
  let configDtype: ModelSpec["dtype"];
  if (model.from !== undefined) {
    const read = readConfig(model, ctx, fromSpan);
    if (!read) return undefined;
    fromConfig = read.arch;
    configDtype = read.dtype;
    for (const [key, value] of Object.entries(model.inline) as [keyof LlamaArch, unknown][]) {
      const stored = fromConfig[key];
      if (stored !== undefined && stored !== value) {
        ctx.report(
          "inlineConflictsConfig",
          `\`${JOB_KEYS[key]} ${String(value)}\` contradicts config.json, which has ${String(stored)}`,
          model.spans[JOB_KEYS[key]] ?? model.span,
        );
      }
    }
  }
  const merged = { ...model.inline, ...fromConfig };
  const { layers, hidden, heads, ffn, vocab } = merged;
  if (layers === undefined || hidden === undefined || heads === undefined || ffn === undefined || vocab === undefined) return undefined;
  const span = (key: keyof LlamaArch) => model.spans[JOB_KEYS[key]] ?? fromSpan;
  if (merged.headDim === undefined && hidden % heads !== 0) {
    ctx.report("headsDivisible", `hidden ${hidden} is not divisible by heads ${heads}; give \`head_dim\``, span("heads"));
    return undefined;
  }
  const arch: LlamaArch = {
    layers,
    hidden,
    heads,
    kvHeads: merged.kvHeads ?? heads,
    headDim: merged.headDim ?? hidden / heads,
    ffn,
    vocab,
    ropeTheta: merged.ropeTheta ?? LLAMA_DEFAULTS.ropeTheta,
    normEps: merged.normEps ?? LLAMA_DEFAULTS.normEps,
    tieEmbeddings: merged.tieEmbeddings ?? LLAMA_DEFAULTS.tieEmbeddings,
    maxSeq: merged.maxSeq ?? LLAMA_DEFAULTS.maxSeq,
    ropeScaling: merged.ropeScaling ?? null,
  };
  const problems = archProblems(arch);
  for (const p of problems) ctx.report(p.grouping ? "headsDivisible" : "unsupportedArch", p.message, span(p.field));
  if (problems.length > 0) return undefined;
  return { arch, dtype: model.dtype ?? configDtype ?? "bf16" };
}

function resolveWeights(model: ModelSpec, arch: LlamaArch, ctx: PassContext): WeightsInfo | null {
  const at = model.spans["from"] ?? model.span;
  const reading = readWeights(ctx.host, model.from!);
  for (const message of reading.unreadable) ctx.report("weightsUnreadable", `${ctx.display(model.from!)}: ${message}`, at);
  if (reading.unreadable.length > 0) return null;
  if (!reading.info) {
    ctx.report("noWeights", `${ctx.display(model.from!)} has no *.safetensors weights; the plan compiles, but \`loraflow run\` needs them`, at);
    return null;
  }
  const problems = weightProblems(weightShapes(arch), reading.tensors);
  for (const message of problems.slice(0, MAX_WEIGHT_REPORTS)) ctx.report("weightsMismatch", `${ctx.display(model.from!)}: ${message}`, at);
  if (problems.length > MAX_WEIGHT_REPORTS) {
    ctx.report("weightsMismatch", `${ctx.display(model.from!)}: and ${problems.length - MAX_WEIGHT_REPORTS} more weight problems`, at);
  }
  return reading.info;
}

/** The model block -> a complete architecture, checked against config.json and the weight headers. */
export const resolveModel: Pass = {
  name: "resolve-model",
  needs: ["job"],
  run(ir: Ir, ctx: PassContext): Ir {
    const model = ir.job!.model;
    const resolved = resolveArch(model, ctx);
    if (!resolved) return ir;
    const result: ResolvedModel = {
      name: model.name,
      arch: resolved.arch,
      dtype: resolved.dtype ?? "bf16",
      folder: model.from ?? null,
      tokenizer: model.tokenizer ?? model.from ?? null,
      weights: model.from === undefined ? null : resolveWeights(model, resolved.arch, ctx),
      seed: model.seed,
    };
    return { ...ir, model: result };
  },
};
