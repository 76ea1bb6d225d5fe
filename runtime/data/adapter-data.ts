import type { Plan } from "../../compiler/index.js";
import { RunError } from "../errors.js";
import { resolveInPlan } from "../plan-paths.js";
import { readDataset, type Dataset } from "./dataset.js";
import { loadTokenizer, type TextTokenizer } from "./tokenizer.js";

type PlanAdapter = Plan["adapters"][number];

/** The tokenizer a plan's text data is read with, or the reason there is none. */
export function planTokenizer(plan: Plan, planDir: string): TextTokenizer {
  if (plan.model.tokenizer === null) {
    throw new RunError("tokenizerInvalid", "text data (alpaca, completion, chat) needs a tokenizer, and the model has none: give `from \"MODEL_FOLDER\"` or `tokenizer \"FOLDER\"` (a folder with tokenizer.json) in the model block");
  }
  return loadTokenizer(resolveInPlan(planDir, plan.model.tokenizer));
}

/** The data file of an adapter, which must have one to train or be evaluated. */
export function adapterDataFile(planDir: string, adapter: PlanAdapter): string {
  if (adapter.data.path === null) {
    throw new RunError("dataInvalid", `adapter "${adapter.name}" has no data: its plan was compiled for planning only; give it \`data "FILE.jsonl"\` to train it`);
  }
  return resolveInPlan(planDir, adapter.data.path);
}

/** An adapter's examples as training sees them: templated, tokenized, truncated, split. */
export function adapterDataset(plan: Plan, planDir: string, adapter: PlanAdapter): Dataset {
  const file = adapterDataFile(planDir, adapter);
  return readDataset({
    file,
    format: adapter.data.format,
    seqLen: adapter.seqLen,
    vocab: plan.model.config.vocab,
    tokenizer: adapter.data.format === "tokens" ? null : planTokenizer(plan, planDir),
    skipBadLines: adapter.data.skipBadLines,
    evalSplit: adapter.data.evalSplit,
    seed: adapter.seed,
  });
}
