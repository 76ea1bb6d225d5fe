import * as fs from "node:fs";
import * as path from "node:path";
import type { Plan } from "../compiler/index.js";
import { planTokenizer } from "./data/adapter-data.js";
import type { ChatMessage, TextTokenizer } from "./data/tokenizer.js";
import { RunError } from "./errors.js";
import { loadNative } from "./native.js";
import { resolveInPlan } from "./plan-paths.js";
import { randomFor } from "./random.js";
import { loadBaseWeights } from "./weights/base-weights.js";
import { loadLora } from "./weights/lora.js";

/** The engine's generator (native/src/infer/generator.h): a sequence and its KV cache. */
export interface NativeGenerator {
  /** Appends tokens; returns the logits after the last. */
  feed(tokens: Int32Array): Float32Array;
  reset(): void;
  readonly length: number;
}

export interface GenerateOptions {
  /** New tokens at most (default 128). */
  maxTokens?: number;
  /** 0 (the default): greedy; above, sampled from softmax(logits / temperature). */
  temperature?: number;
  /** Nucleus sampling: the smallest set of tokens whose probability reaches top_p (default 1). */
  topP?: number;
  seed?: number;
  /** Reuse the cached keys and values (default); false recomputes the whole sequence each token. */
  cache?: boolean;
  /** Each new token as it comes, with the text it completes (empty while a character is unfinished). */
  onToken?: (id: number, text: string) => void;
}

/** A model (with its adapter, when the plan's first adapter has an `init`) ready to generate. */
export interface Model {
  tokenizer: TextTokenizer;
  /** Ids that end a reply: EOS, and generation_config.json's eos_token_id. */
  stops: Set<number>;
  open(maxTokens: number): NativeGenerator;
}

/** Loads a plan's model for generation: base weights, the first adapter's `init` weights, the tokenizer. */
export function loadModel(plan: Plan, planDir: string): Model {
  const native = loadNative() as unknown as { Generator: new (spec: unknown) => NativeGenerator };
  const tokenizer = planTokenizer(plan, planDir);
  const weights = Object.fromEntries(loadBaseWeights(plan, planDir));
  const a = plan.adapters[0];
  const adapter = a !== undefined && a.init !== null ? { rank: a.rank, scale: a.scaling, sites: loadLora(resolveInPlan(planDir, a.init), plan, a) } : undefined;
  const stops = new Set<number>(tokenizer.eos === null ? [] : [tokenizer.eos]);
  if (plan.model.folder !== null) {
    const file = path.join(resolveInPlan(planDir, plan.model.folder), "generation_config.json");
    if (fs.existsSync(file)) {
      try {
        const ids = (JSON.parse(fs.readFileSync(file, "utf8")) as { eos_token_id?: unknown }).eos_token_id;
        for (const id of Array.isArray(ids) ? ids : [ids]) if (Number.isInteger(id)) stops.add(id as number);
      } catch {
        // A generation_config.json that does not parse names no stop token.
      }
    }
  }
  return {
    tokenizer,
    stops,
    open: (maxTokens) => {
      try {
        return new native.Generator({ config: plan.model.config, weights, ...(adapter && { adapter }), maxTokens });
      } catch (e) {
        throw new RunError("weightsInvalid", (e as Error).message.replace(/^generate: /, ""));
      }
    },
  };
}

/** A prompt's ids: the text, or a conversation rendered with the chat template and its generation prompt; BOS once. */
export function promptIds(tokenizer: TextTokenizer, prompt: { text: string } | { chat: ChatMessage[] }): number[] {
  let text: string;
  if ("text" in prompt) text = prompt.text;
  else {
    try {
      text = tokenizer.renderChat(prompt.chat, true);
    } catch (e) {
      throw new RunError("dataInvalid", `the chat template failed: ${(e as Error).message}`);
    }
  }
  const ids = tokenizer.encode(text);
  if (tokenizer.bos !== null && ids[0] !== tokenizer.bos) ids.unshift(tokenizer.bos);
  return ids;
}

/** The next token: the most likely, or one drawn from the tempered, nucleus-cut distribution. */
function choose(logits: Float32Array, temperature: number, topP: number, u: number): number {
  if (temperature <= 0) {
    let best = 0;
    for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
    return best;
  }
  let max = -Infinity;
  for (const x of logits) max = Math.max(max, x);
  const p = Array.from(logits, (x, i) => ({ i, w: Math.exp((x - max) / temperature) }));
  p.sort((a, b) => b.w - a.w || a.i - b.i);
  const total = p.reduce((s, x) => s + x.w, 0);
  let kept = 0;
  let mass = 0;
  while (kept < p.length && (kept === 0 || mass / total < topP)) mass += p[kept++]!.w;
  let r = u * mass;
  for (let k = 0; k < kept; k++) {
    r -= p[k]!.w;
    if (r < 0) return p[k]!.i;
  }
  return p[kept - 1]!.i;
}

/** Generates after `prompt` until a stop token or maxTokens; returns the new ids (the stop token not included). */
export function generate(model: Model, prompt: number[], options: GenerateOptions = {}): number[] {
  const maxTokens = options.maxTokens ?? 128;
  const temperature = options.temperature ?? 0;
  const topP = options.topP ?? 1;
  const random = randomFor(options.seed ?? 0, 0x6e6);
  const generator = model.open(prompt.length + maxTokens);
  const out: number[] = [];
  let shown = "";
  let logits = generator.feed(Int32Array.from(prompt));
  for (let k = 0; k < maxTokens; k++) {
    const id = choose(logits, temperature, topP, random.next());
    if (model.stops.has(id)) break;
    out.push(id);
    if (options.onToken) {
      // A character spread over several byte-level tokens is shown when it is whole.
      const text = model.tokenizer.decode(out);
      const whole = text.endsWith("\ufffd") ? shown : text;
      options.onToken(id, whole.slice(shown.length));
      shown = whole;
    }
    if (k + 1 === maxTokens) break;
    if (options.cache === false) {
      generator.reset();
      logits = generator.feed(Int32Array.from([...prompt, ...out]));
    } else logits = generator.feed(Int32Array.from([id]));
  }
  return out;
}
