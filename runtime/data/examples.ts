import type { Row } from "./formats.js";
import type { ChatMessage, TextTokenizer } from "./tokenizer.js";

/** One training example: token ids and the labels the loss reads (-100: not counted). */
export interface Example {
  inputIds: number[];
  labels: number[];
}

/** Tokens before the first place where `a` and `b` differ. */
function commonPrefix(a: readonly number[], b: readonly number[]): number {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
}

/**
 * The token where character `at` of `text` falls, in `ids` (the ids of the whole text): the
 * tokens the text before `at` shares with the whole. Neither tokenizer library reports offsets,
 * so the prefix is tokenized on its own. Where a token straddles `at` (a merge across the
 * boundary) it belongs to what follows, as TRL's prompt-completion masking counts it.
 */
function tokenAt(tokenizer: TextTokenizer, text: string, at: number, ids: readonly number[]): number {
  if (at <= 0) return 0;
  if (at >= text.length) return ids.length;
  return commonPrefix(tokenizer.encode(text.slice(0, at)), ids);
}

/**
 * ids and labels from a text and its trained character spans. `append`: EOS follows each span;
 * `template`: the template's own end-of-turn token does, or EOS where the text ends with the span.
 */
function fromSpans(tokenizer: TextTokenizer, text: string, spans: readonly [number, number][], endOfTurn: "append" | "template"): Example {
  const ids = tokenizer.encode(text);
  const trained = new Uint8Array(ids.length);
  const inserts: number[] = [];
  for (const [start, end] of spans) {
    const from = tokenAt(tokenizer, text, start, ids);
    const to = tokenAt(tokenizer, text, end, ids);
    trained.fill(1, from, to);
    if (endOfTurn === "append") {
      if (tokenizer.eos !== null) inserts.push(to);
    } else if (to < ids.length && tokenizer.isSpecial(ids[to]!)) {
      // The template's end-of-turn token (<|eot_id|>, <|im_end|>) is what the model must learn
      // to write to stop: it is trained with the reply, as TRL's generation spans include it.
      trained[to] = 1;
    } else if (to === ids.length && tokenizer.eos !== null) inserts.push(to);
  }
  const inputIds: number[] = [];
  const labels: number[] = [];
  let next = 0;
  for (let t = 0; t <= ids.length; t++) {
    while (next < inserts.length && inserts[next] === t) {
      inputIds.push(tokenizer.eos!);
      labels.push(tokenizer.eos!);
      next++;
    }
    if (t === ids.length) break;
    inputIds.push(ids[t]!);
    labels.push(trained[t] ? ids[t]! : -100);
  }
  // BOS exactly once: the tokenizer's, unless the text (a template) already begins with it.
  if (tokenizer.bos !== null && inputIds[0] !== tokenizer.bos) {
    inputIds.unshift(tokenizer.bos);
    labels.unshift(-100);
  }
  return { inputIds, labels };
}

/**
 * Where each assistant message's content lies in the rendered conversation: messages are looked
 * for in order, each after the one before, so that a reply that repeats a question's words is
 * found where the reply is. A template that rewrites a reply (strips it, say) is matched by the
 * stripped text; one that drops or transforms it otherwise is an error, as its span is unknown.
 */
function assistantSpans(text: string, messages: readonly ChatMessage[]): [number, number][] | string {
  const spans: [number, number][] = [];
  let cursor = 0;
  for (let i = 0; i < messages.length; i++) {
    const { role, content } = messages[i]!;
    if (content === "") continue;
    let at = text.indexOf(content, cursor);
    let length = content.length;
    if (at < 0 && content.trim() !== content && content.trim() !== "") {
      at = text.indexOf(content.trim(), cursor);
      length = content.trim().length;
    }
    if (at < 0) {
      if (role === "assistant") return `the chat template does not write messages[${i}]'s content as given, so what to train on cannot be found`;
      continue;
    }
    if (role === "assistant") spans.push([at, at + length]);
    cursor = at + length;
  }
  return spans;
}

/**
 * One data row as training sees it, before truncation, following TRL's SFT semantics: the loss
 * counts the response only (for chat, the assistant turns), EOS follows every response, BOS
 * begins the sequence once. Returns the problem as a string when the row cannot be tokenized.
 */
export function tokenizeRow(row: Row, tokenizer: TextTokenizer | null): Example | string {
  if (row.kind === "tokens") return { inputIds: row.inputIds, labels: row.labels };
  if (tokenizer === null) throw new Error("text rows need a tokenizer");
  if (row.kind === "text") {
    const text = row.prompt + row.response;
    return fromSpans(tokenizer, text, [[row.prompt.length, text.length]], "append");
  }
  let text: string;
  try {
    text = tokenizer.renderChat(row.messages, false);
  } catch (e) {
    return `the chat template failed: ${(e as Error).message}`;
  }
  const spans = assistantSpans(text, row.messages);
  if (typeof spans === "string") return spans;
  return fromSpans(tokenizer, text, spans, "template");
}

/** Tokens the loss counts: labels after the first (a sequence's first token is predicted by nothing). */
export function countedTokens(e: Example): number {
  let n = 0;
  for (let t = 1; t < e.labels.length; t++) if (e.labels[t]! >= 0) n++;
  return n;
}
