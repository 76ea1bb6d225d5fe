import type { Plan } from "../compiler/index.js";
import { buildSequences } from "./data/sequences.js";
import { adapterDataFile, adapterDataset } from "./data/adapter-data.js";
import { RunError } from "./errors.js";
import { loadNative } from "./native.js";
import { checkMemory } from "./memory-need.js";
import { resolveInPlan } from "./plan-paths.js";
import { loadBaseWeights } from "./weights/base-weights.js";
import { loadLora, type LoraSites } from "./weights/lora.js";
import type { Example } from "./data/examples.js";

export interface EvalResult {
  /** Mean cross-entropy over the counted tokens (Hugging Face's causal-LM loss). */
  loss: number;
  /** Counted tokens: positions whose next-token label is not -100. */
  tokens: number;
  /** Examples longer than the sequence length, cut to fit. */
  truncated: number;
}

/** Sequences per forward call: bounds the logits buffer ([rows, vocab]) without slowing small models. */
const SEQUENCES_PER_CALL = 4;

/**
 * The loss of a plan's model, with its first adapter's `init` weights when it has one, on that
 * adapter's data: every example once, packed (a packed example computes exactly what it would
 * alone), in order.
 */
export function evaluatePlan(plan: Plan, planDir: string): EvalResult {
  const adapter = plan.adapters[0];
  if (!adapter) throw new RunError("dataInvalid", "plan has no adapter naming the data to evaluate");
  const dataFile = adapterDataFile(planDir, adapter);
  let data;
  try {
    data = adapterDataset(plan, planDir, adapter);
  } catch (e) {
    if (e instanceof RunError && e.kind === "dataInvalid" && /has a counted token/.test(e.message)) throw new RunError("noTokens", `${e.message}: there is nothing to evaluate`);
    throw e;
  }
  checkMemory(plan);
  const weights = loadBaseWeights(plan, planDir);
  const sites = adapter.init === null ? {} : loadLora(resolveInPlan(planDir, adapter.init), plan, adapter);
  const { loss, tokens } = examplesLoss(plan, weights, adapter, sites, data.train);
  if (tokens === 0) throw new RunError("noTokens", `${dataFile}: no example has a counted label: there is nothing to evaluate`);
  if (!Number.isFinite(loss)) throw new RunError("diverged", `the loss is ${loss}: the model's weights${adapter.init === null ? "" : " or the adapter's"} give non-finite logits`);
  return { loss, tokens, truncated: data.stats.truncated };
}

/**
 * The mean loss of examples under base weights and an adapter's sites: every example once,
 * packed into the adapter's seq_len (a packed example computes exactly what it would alone), in
 * one engine call that copies the weights once. Returns the counted tokens with it.
 */
export function examplesLoss(plan: Plan, weights: Map<string, Float32Array>, adapter: Plan["adapters"][number], sites: LoraSites, examples: Example[]): { loss: number; tokens: number } {
  const native = loadNative();
  const s = buildSequences(examples, adapter.seqLen, true);
  let tokens = 0;
  const L = s.seqLen;
  const microBatches = [];
  for (let first = 0; first < s.count; first += SEQUENCES_PER_CALL) {
    const n = Math.min(SEQUENCES_PER_CALL, s.count - first);
    const rows = n * L;
    const slice = (a: Int32Array) => a.slice(first * L, first * L + rows);
    const segStart = slice(s.segStart).map((v, i) => v + Math.floor(i / L) * L);
    const targets = slice(s.targets);
    tokens += targets.reduce((c, t) => c + (t >= 0 ? 1 : 0), 0);
    microBatches.push({
      tokens: slice(s.tokens),
      targets,
      segStart,
      pos: slice(s.pos),
      rowKeys: new BigUint64Array(rows),
      parts: [{ adapter: 0, row0: 0, rows, gradScale: 1 }],
    });
  }
  if (tokens === 0) return { loss: NaN, tokens };
  const sum = native.modelGrad({
    config: plan.model.config,
    weights: Object.fromEntries(weights),
    adapters: [{ rank: adapter.rank, scale: adapter.scaling, dropout: 0, sites }],
    stages: [[0, 2 * plan.model.config.layers]],
    microBatches,
    precision: "float",
    backward: false,
  }).loss;
  return { loss: sum / tokens, tokens };
}
