import { describeValue } from "../../dsl/index.js";
import type { ChatMessage } from "./tokenizer.js";

/**
 * The data line formats and what one line becomes before tokenizing: a prompt and the response
 * trained on (alpaca, after its template; completion), a conversation (chat), or token ids
 * (tokens).
 */
export type Row =
  | { kind: "text"; prompt: string; response: string }
  | { kind: "chat"; messages: ChatMessage[] }
  | { kind: "tokens"; inputIds: number[]; labels: number[] };

export type FormatName = "alpaca" | "completion" | "chat" | "tokens";

/**
 * Stanford Alpaca's prompt (github.com/tatsu-lab/stanford_alpaca, train.py's PROMPT_DICT): the
 * model learns the response that follows `### Response:\n`.
 */
export function alpacaPrompt(instruction: string, input: string): string {
  return input === ""
    ? "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n" +
        `### Instruction:\n${instruction}\n\n### Response:\n`
    : "Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request.\n\n" +
        `### Instruction:\n${instruction}\n\n### Input:\n${input}\n\n### Response:\n`;
}

function text(row: Record<string, unknown>, key: string, optional = false): string | { problem: string } | undefined {
  const v = row[key];
  if (v === undefined || (optional && v === null)) return optional ? undefined : { problem: `\`${key}\` is missing` };
  if (typeof v !== "string") return { problem: `\`${key}\` is ${describeValue(v)}, not a string` };
  return v;
}

type Parse = (row: Record<string, unknown>) => Row | string;

function alpaca(row: Record<string, unknown>): Row | string {
  const instruction = text(row, "instruction");
  if (typeof instruction !== "string") return instruction!.problem;
  const input = text(row, "input", true);
  if (typeof input === "object") return input.problem;
  const output = text(row, "output");
  if (typeof output !== "string") return output!.problem;
  return { kind: "text", prompt: alpacaPrompt(instruction, input ?? ""), response: output };
}

function completion(row: Record<string, unknown>): Row | string {
  const prompt = text(row, "prompt");
  if (typeof prompt !== "string") return prompt!.problem;
  const response = text(row, "completion");
  if (typeof response !== "string") return response!.problem;
  return { kind: "text", prompt, response };
}

function chat(row: Record<string, unknown>): Row | string {
  const messages = row["messages"];
  if (messages === undefined) return "`messages` is missing";
  if (!Array.isArray(messages)) return `\`messages\` is ${describeValue(messages)}, not an array`;
  if (messages.length === 0) return "`messages` is empty";
  const out: ChatMessage[] = [];
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i] as unknown;
    if (typeof m !== "object" || m === null || Array.isArray(m)) return `\`messages[${i}]\` is ${describeValue(m)}, not an object {"role": ..., "content": ...}`;
    const role = text(m as Record<string, unknown>, "role");
    if (typeof role !== "string") return `\`messages[${i}]\`: ${role!.problem}`;
    const content = text(m as Record<string, unknown>, "content");
    if (typeof content !== "string") return `\`messages[${i}]\`: ${content!.problem}`;
    out.push({ role, content });
  }
  return { kind: "chat", messages: out };
}

function idArray(value: unknown, vocab: number, allowMasked: boolean): number[] | string {
  if (!Array.isArray(value)) return `is ${describeValue(value)}, not an array`;
  for (let i = 0; i < value.length; i++) {
    const v = value[i];
    if (!Number.isInteger(v)) return `has ${describeValue(v)} at index ${i}, not a whole number`;
    if (allowMasked && v === -100) continue;
    if ((v as number) < 0 || (v as number) >= vocab) return `has ${v} at index ${i}, outside the vocabulary [0, ${vocab})`;
  }
  return value as number[];
}

/** `{"input_ids": [...], "labels": [...]}`, labels optional (default: the input ids), -100 masking a position. */
function tokens(vocab: number): Parse {
  return (row) => {
    if (!("input_ids" in row)) return "`input_ids` is missing";
    const ids = idArray(row["input_ids"], vocab, false);
    if (typeof ids === "string") return `\`input_ids\` ${ids}`;
    if (ids.length === 0) return "`input_ids` is empty";
    let labels = ids;
    if (row["labels"] !== undefined) {
      const l = idArray(row["labels"], vocab, true);
      if (typeof l === "string") return `\`labels\` ${l}`;
      if (l.length !== ids.length) return `\`labels\` has ${l.length} entries, \`input_ids\` ${ids.length}`;
      labels = l;
    }
    return { kind: "tokens", inputIds: ids, labels };
  };
}

/** Each format's line parser and the shape a line has, for messages. */
export function formatParser(format: FormatName, vocab: number): { parse: Parse; shape: string } {
  switch (format) {
    case "alpaca":
      return { parse: alpaca, shape: '{"instruction": ..., "input": ..., "output": ...}' };
    case "completion":
      return { parse: completion, shape: '{"prompt": ..., "completion": ...}' };
    case "chat":
      return { parse: chat, shape: '{"messages": [{"role": ..., "content": ...}, ...]}' };
    case "tokens":
      return { parse: tokens(vocab), shape: '{"input_ids": [...], "labels": [...]}' };
  }
}
