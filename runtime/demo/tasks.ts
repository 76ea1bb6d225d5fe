import { alpacaPrompt } from "../data/formats.js";
import { randomFor, type Random } from "../random.js";

/**
 * The demo's three skills, one per data format, on short words and numbers written a symbol at a
 * time ("c a f e"): reversing a word (chat), upper-casing one (alpaca), adding one to each digit
 * of a number (completion). Symbols are spaced so that each is one token whatever the tokenizer
 * learnt, and the alphabet is small enough for a rank-16 adapter on a small model to learn in a
 * few hundred steps on a CPU.
 */
export const ALPHABET = "abcdefghkm";
const LENGTH = 4;

export interface Task {
  name: string;
  format: "chat" | "alpaca" | "completion";
  /** A training line of this format for an input. */
  line(input: string): Record<string, unknown>;
  /** The prompt generation starts from, and the answer expected. */
  prompt(input: string): { text: string } | { chat: { role: string; content: string }[] };
  answer(input: string): string;
  input(r: Random): string;
}

const symbols = (r: Random, from: string) => Array.from({ length: LENGTH }, () => from[r.int(from.length)]!).join(" ");
const reverse = (w: string) => w.split(" ").reverse().join(" ");
const addOne = (d: string) =>
  d
    .split(" ")
    .map((c) => String((Number(c) + 1) % 10))
    .join(" ");

/** The instruction of the upper-case adapter's alpaca lines (the Stanford prompt, runtime/data/formats.ts). */
export const ALPACA_INSTRUCTION = "Upper-case the word.";

export const TASKS: Task[] = [
  {
    name: "reverse",
    format: "chat",
    line: (w) => ({ messages: [{ role: "user", content: `reverse ${w}` }, { role: "assistant", content: reverse(w) }] }),
    prompt: (w) => ({ chat: [{ role: "user", content: `reverse ${w}` }] }),
    answer: reverse,
    input: (r) => symbols(r, ALPHABET),
  },
  {
    name: "upper",
    format: "alpaca",
    line: (w) => ({ instruction: ALPACA_INSTRUCTION, input: w, output: w.toUpperCase() }),
    prompt: (w) => ({ text: alpacaPrompt(ALPACA_INSTRUCTION, w) }),
    answer: (w) => w.toUpperCase(),
    input: (r) => symbols(r, ALPHABET),
  },
  {
    name: "add_one",
    format: "completion",
    line: (d) => ({ prompt: `add one to ${d} =`, completion: ` ${addOne(d)}` }),
    prompt: (d) => ({ text: `add one to ${d} =` }),
    answer: (d) => ` ${addOne(d)}`,
    input: (r) => symbols(r, "0123456789"),
  },
];


/** `count` training inputs and `held` others none of them equals, from the demo's seed. */
export function taskInputs(task: Task, count: number, held: number, seed: number): { train: string[]; heldOut: string[] } {
  const r = randomFor(seed, 0xde70);
  const train = Array.from({ length: count }, () => task.input(r));
  const seen = new Set(train);
  const heldOut: string[] = [];
  for (let tries = 0; heldOut.length < held && tries < held * 100; tries++) {
    const x = task.input(r);
    if (!seen.has(x)) {
      seen.add(x);
      heldOut.push(x);
    }
  }
  return { train, heldOut };
}
