import type { Example } from "./examples.js";
import type { TextTokenizer } from "./tokenizer.js";

/** Marks around what the loss counts, in `loraflow data --show`. */
export const TRAINED_OPEN = "⟦";
export const TRAINED_CLOSE = "⟧";

/**
 * An example as text, the trained spans between ⟦ and ⟧ and everything else (prompt, template,
 * padding of nothing) plain: masked. Each run of tokens is decoded as a whole, so characters
 * that span several byte-level tokens come out whole. Without a tokenizer, the ids themselves.
 */
export function markedText(example: Example, tokenizer: TextTokenizer | null): string {
  const render = (ids: number[]) => (tokenizer === null ? ids.join(" ") + " " : tokenizer.decode(ids));
  let out = "";
  let run: number[] = [];
  let trained = false;
  const flush = () => {
    if (run.length === 0) return;
    out += trained ? TRAINED_OPEN + render(run) + TRAINED_CLOSE : render(run);
    run = [];
  };
  // labels[t] counts token t as a prediction from t - 1: a trained span is where labels are kept.
  example.inputIds.forEach((id, t) => {
    const isTrained = t > 0 && example.labels[t]! >= 0;
    if (isTrained !== trained) {
      flush();
      trained = isTrained;
    }
    run.push(id);
  });
  flush();
  return out;
}

/** Examples as `tokens` JSONL: what `format tokens` reads back to the same training. */
export function tokensJsonl(examples: readonly Example[]): string {
  return examples.map((e) => JSON.stringify({ input_ids: e.inputIds, labels: e.labels })).join("\n") + (examples.length > 0 ? "\n" : "");
}
