import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readDataset, type DataSettings } from "../../runtime/data/dataset.js";
import type { Example } from "../../runtime/data/examples.js";
import { alpacaPrompt } from "../../runtime/data/formats.js";
import { loadTokenizer, type TextTokenizer } from "../../runtime/data/tokenizer.js";
import { RunError } from "../../runtime/errors.js";
import { tempDir } from "../helpers/hf-model.js";
import { copyRealTokenizer, writeSmallTokenizer } from "../helpers/tokenizers.js";

let dir: string;
let small: TextTokenizer;
let llama: TextTokenizer;
let qwen: TextTokenizer;
beforeAll(() => {
  dir = tempDir("loraflow-data-");
  small = loadTokenizer(writeSmallTokenizer(path.join(dir, "small")));
  llama = loadTokenizer(copyRealTokenizer("llama3_1", path.join(dir, "llama3")));
  qwen = loadTokenizer(copyRealTokenizer("qwen3", path.join(dir, "qwen3")));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

let files = 0;
function data(lines: unknown[], settings: Partial<DataSettings> & Pick<DataSettings, "format">) {
  const file = path.join(dir, `d${files++}.jsonl`);
  fs.writeFileSync(file, lines.map((l) => (typeof l === "string" ? l : JSON.stringify(l))).join("\n") + "\n");
  return { file, read: () => readDataset({ file, seqLen: 256, vocab: 200_000, tokenizer: small, skipBadLines: false, evalSplit: 0, seed: 1, ...settings }) };
}

/** The runs of trained tokens, each decoded: what the loss is computed on. */
function trainedSpans(t: TextTokenizer, e: Example): string[] {
  const spans: string[] = [];
  let run: number[] = [];
  for (let i = 0; i <= e.labels.length; i++) {
    if (i < e.labels.length && e.labels[i]! >= 0) {
      expect(e.labels[i]).toBe(e.inputIds[i]);
      run.push(e.inputIds[i]!);
    } else if (run.length > 0) {
      spans.push(t.decode(run));
      run = [];
    }
  }
  return spans;
}

const CHAT = [
  { role: "system", content: "You answer in one word." },
  { role: "user", content: "Grüße! Wie heißt die Stadt?" },
  { role: "assistant", content: "Köln, naïve café 東京" },
  { role: "user", content: "And again?" },
  { role: "assistant", content: "Again: Köln" },
];

describe("data formats, tokenized as TRL's SFT does", () => {
  it("alpaca: the Stanford prompt (with and without input) is masked, the output and EOS are trained, BOS once", () => {
    const { read } = data(
      [
        { instruction: "Reverse the word", input: "hello", output: "olleh" },
        { instruction: "Upper-case quiet", output: "QUIET" },
        { instruction: "Add 12 and 30", input: "", output: "42" },
      ],
      { format: "alpaca" },
    );
    const { train, stats } = read();
    expect(train).toHaveLength(3);
    for (const [i, output] of ["olleh", "QUIET", "42"].entries()) {
      const e = train[i]!;
      expect(trainedSpans(small, e)).toEqual([`${output}<|eos|>`]);
      expect(e.inputIds.filter((t) => t === small.bos)).toEqual([small.bos]);
      expect(e.inputIds[0]).toBe(small.bos);
      expect(e.inputIds.at(-1)).toBe(small.eos);
    }
    // The whole text is tokenized at once, as the model will see it when prompted.
    expect(small.decode(train[0]!.inputIds)).toBe(`<|bos|>${alpacaPrompt("Reverse the word", "hello")}olleh<|eos|>`);
    expect(small.decode(train[1]!.inputIds)).toContain("### Instruction:\nUpper-case quiet\n\n### Response:\nQUIET");
    expect(small.decode(train[1]!.inputIds)).not.toContain("### Input:");
    expect(stats).toMatchObject({ examples: 3, truncated: 0, dropped: 0, skipped: 0 });
    expect(stats.counted).toBe(train.reduce((n, e) => n + e.labels.slice(1).filter((l) => l >= 0).length, 0));
  });

  it("completion: the prompt is masked, the completion and EOS are trained", () => {
    const { read } = data([{ prompt: "Reverse hello:", completion: " olleh" }], { format: "completion" });
    const [e] = read().train;
    expect(trainedSpans(small, e!)).toEqual([" olleh<|eos|>"]);
    expect(small.decode(e!.inputIds)).toBe("<|bos|>Reverse hello: olleh<|eos|>");
  });

  it("chat: a multi-turn conversation with a system message and non-ASCII text trains the assistant turns and their end-of-turn only", () => {
    const { read } = data([{ messages: CHAT }], { format: "chat" });
    const [e] = read().train;
    expect(trainedSpans(small, e!)).toEqual(["Köln, naïve café 東京<|eos|>", "Again: Köln<|eos|>"]);
    expect(e!.inputIds.filter((t) => t === small.bos)).toHaveLength(1);
    expect(small.decode(e!.inputIds)).toBe(small.renderChat(CHAT, false));
  });

  it("truncation keeps the start and is counted; an example left with nothing to train on is dropped and counted", () => {
    const long = "The quick brown fox jumps over the lazy dog. ".repeat(8);
    const { read } = data(
      [
        { prompt: "Q:", completion: long },
        { prompt: long, completion: " end" },
        { prompt: "Add:", completion: " 42" },
      ],
      { format: "completion", seqLen: 24 },
    );
    const { train, stats } = read();
    expect(stats).toMatchObject({ examples: 2, truncated: 2, dropped: 1 });
    expect(train).toHaveLength(2);
    expect(train[0]!.inputIds).toHaveLength(24);
    expect(small.decode(train[0]!.inputIds)).toMatch(/^<\|bos\|>Q:The quick brown/);
    expect(train[0]!.line).toBe(1);
    expect(train[1]!.line).toBe(3);
  });

  it("tokens: as before, -100 labels kept, and all-masked examples dropped", () => {
    const { read } = data([{ input_ids: [1, 2, 3], labels: [-100, 2, 3] }, { input_ids: [4, 5], labels: [-100, -100] }, { input_ids: [6, 7] }], { format: "tokens", tokenizer: null, vocab: 64 });
    const { train, stats } = read();
    expect(train.map((e) => e.labels)).toEqual([[-100, 2, 3], [6, 7]]);
    expect(stats).toMatchObject({ examples: 2, dropped: 1 });
  });

  it("the held-out split is drawn from the seed: the same every time, different for another seed, disjoint", () => {
    const rows = Array.from({ length: 40 }, (_, i) => ({ prompt: `Add ${i}:`, completion: ` ${i + 1}` }));
    const { file } = data(rows, { format: "completion" });
    const read = (seed: number) => readDataset({ file, format: "completion", seqLen: 64, vocab: 200_000, tokenizer: small, skipBadLines: false, evalSplit: 0.1, seed });
    const a = read(1);
    expect(a.eval).toHaveLength(4);
    expect(a.train).toHaveLength(36);
    expect(a.stats.eval).toBe(4);
    expect(read(1).eval.map((e) => e.line)).toEqual(a.eval.map((e) => e.line));
    expect(read(2).eval.map((e) => e.line)).not.toEqual(a.eval.map((e) => e.line));
    const lines = new Set(a.train.map((e) => e.line));
    expect(a.eval.every((e) => !lines.has(e.line))).toBe(true);
  });
});

describe("loss spans on real templates", () => {
  it("Llama 3.1: BOS once although both the template and the post-processor write it; each reply and its <|eot_id|> trained", () => {
    const { read } = data([{ messages: CHAT }], { format: "chat", tokenizer: llama, vocab: 128256 });
    const [e] = read().train;
    const bos = llama.bos!;
    expect(llama.bosText).toBe("<|begin_of_text|>");
    expect(e!.inputIds.filter((t) => t === bos)).toEqual([bos]);
    expect(e!.inputIds[0]).toBe(bos);
    expect(trainedSpans(llama, e!)).toEqual(["Köln, naïve café 東京<|eot_id|>", "Again: Köln<|eot_id|>"]);
    // The ids are the whole rendering's, tokenized at once.
    expect(e!.inputIds).toEqual(llama.encode(llama.renderChat(CHAT, false)));
    expect(llama.decode(e!.inputIds.slice(0, e!.labels.findIndex((l) => l >= 0)))).toMatch(/<\|start_header_id\|>assistant<\|end_header_id\|>\n\n$/);
  });

  it("Qwen 3: no BOS, NFC-normalised text; each reply and its <|im_end|> trained, the template's empty think block not", () => {
    const decomposed = CHAT.map((m) => ({ ...m, content: m.content.normalize("NFD") }));
    const { read } = data([{ messages: CHAT }, { messages: decomposed }], { format: "chat", tokenizer: qwen, vocab: 151936 });
    const [e, nfd] = read().train;
    expect(qwen.bos).toBeNull();
    expect(trainedSpans(qwen, e!)).toEqual(["Köln, naïve café 東京<|im_end|>", "Again: Köln<|im_end|>"]);
    expect(qwen.decode(e!.inputIds)).toContain("<think>\n\n</think>\n\nAgain: Köln<|im_end|>");
    expect(e!.inputIds).toEqual(qwen.encode(qwen.renderChat(CHAT, false)));
    expect(nfd!.inputIds).toEqual(e!.inputIds);
    expect(nfd!.labels).toEqual(e!.labels);
  });

  it("alpaca with Llama 3.1 ends each response with its eos_token", () => {
    const { read } = data([{ instruction: "Say hi", output: "Hi" }], { format: "alpaca", tokenizer: llama, vocab: 128256 });
    expect(trainedSpans(llama, read().train[0]!)).toEqual([`Hi${llama.eosText}`]);
  });
});

describe("bad data: file:line, or skipped and counted", () => {
  const refused = (read: () => unknown) => {
    try {
      read();
    } catch (e) {
      expect(e).toBeInstanceOf(RunError);
      return (e as RunError).message;
    }
    throw new Error("not refused");
  };

  it.each([
    ["a malformed JSON line", "alpaca", ['{"instruction": "a", "output": "b"}', '{"instruction": "a", "output": '], /d\d+\.jsonl:2: not valid JSON \(Unexpected end of JSON input\): `\{"instruction": "a", "ou…`/],
    ["a missing field", "alpaca", [{ instruction: "a" }], /d\d+\.jsonl:1: `output` is missing/],
    ["a field of the wrong type", "completion", [{ prompt: "a", completion: 3 }], /d\d+\.jsonl:1: `completion` is the number 3, not a string|d\d+\.jsonl:1: `completion` is 3, not a string/],
    ["a message without content", "chat", [{ messages: [{ role: "user" }] }], /d\d+\.jsonl:1: `messages\[0\]`: `content` is missing/],
    ["a role the template rejects", "chat", [{ messages: [{ role: "tool", content: "x" }, { role: "assistant", content: "y" }] }], /d\d+\.jsonl:1: the chat template failed: unknown role: tool/],
  ] as const)("%s", (_, format, lines, pattern) => {
    const { read } = data([...lines], { format });
    expect(refused(read)).toMatch(pattern);
  });

  it("an empty dataset", () => {
    const { read } = data([""], { format: "alpaca" });
    expect(refused(read)).toMatch(/d\d+\.jsonl: no examples/);
  });

  it("a chat template that raises", () => {
    const raising = loadTokenizer(writeSmallTokenizer(path.join(dir, "raising"), 300, "{{ raise_exception('conversations must start with a user turn') }}"));
    const { read } = data([{ messages: CHAT }], { format: "chat", tokenizer: raising });
    expect(refused(read)).toMatch(/d\d+\.jsonl:1: the chat template failed: conversations must start with a user turn/);
  });

  it("a template that rewrites a reply: its span cannot be found", () => {
    const upper = loadTokenizer(writeSmallTokenizer(path.join(dir, "upper"), 300, "{% for m in messages %}{{ m.content | upper }}{% endfor %}"));
    const { read } = data([{ messages: CHAT }], { format: "chat", tokenizer: upper });
    expect(refused(read)).toMatch(/d\d+\.jsonl:1: the chat template does not write messages\[2\]'s content as given/);
  });

  it("a missing tokenizer", () => {
    expect(refused(() => loadTokenizer(path.join(dir, "nowhere")))).toMatch(/nowhere\/tokenizer\.json: does not exist/);
  });

  it("skip_bad_lines skips and counts bad lines, and reports the first", () => {
    const { read } = data(['{"prompt": "a", "completion": " b"}', "{oops", '{"prompt": 1}', '{"prompt": "c", "completion": " d"}'], { format: "completion", skipBadLines: true });
    const r = read();
    expect(r.train).toHaveLength(2);
    expect(r.stats.skipped).toBe(2);
    expect(r.skippedExamples[0]).toMatch(/:2: not valid JSON/);
    expect(r.skippedExamples[1]).toMatch(/:3: `prompt` is /);
  });
});

describe("the held-out split during training", () => {
  it("is evaluated every eval_every steps and after the last, with the weights of that step, and logged in metrics.jsonl", async () => {
    const { runPlan } = await import("../../runtime/run.js");
    const { compileOrThrow } = await import("../helpers/train-job.js");
    const { examplesLoss } = await import("../../runtime/eval.js");
    const { loadBaseWeights } = await import("../../runtime/weights/base-weights.js");
    const rows = Array.from({ length: 24 }, (_, i) => ({ prompt: `Add ${i % 10} and ${i % 7}:`, completion: ` ${(i % 10) + (i % 7)}` }));
    const file = path.join(dir, "held.jsonl");
    fs.writeFileSync(file, rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
    const job = `model m { arch llama layers 2 hidden 16 heads 4 kv_heads 2 ffn 32 vocab 400 max_seq 64 dtype fp32 seed 3 tokenizer "small" }
adapter a { rank 2 targets q_proj v_proj data "held.jsonl" format completion seq_len 32 batch 4 steps 7 eval_split 0.25 eval_every 3 optimizer adamw { lr 1e-2 } }
cluster c { gpu cpu gpus 2 }
plan { schedule 1f1b stages 2 }`;
    const planDir = path.join(dir, "held-plan");
    const plan = compileOrThrow(job, { baseDir: dir, planDir });
    const evals: { step: number; loss: number; tokens: number }[] = [];
    const run = await runPlan(plan, planDir, { onEval: (e) => evals.push(e) });
    expect(evals.map((e) => e.step)).toEqual([3, 6, 7]);
    expect(evals.every((e) => Number.isFinite(e.loss) && e.tokens > 0)).toBe(true);
    // The last is the trained adapter's loss on the 6 held-out examples.
    const heldOut = readDataset({ file, format: "completion", seqLen: 32, vocab: 400, tokenizer: small, skipBadLines: false, evalSplit: 0.25, seed: 0 }).eval;
    expect(heldOut).toHaveLength(6);
    expect(evals[2]!.loss).toBe(examplesLoss(plan, loadBaseWeights(plan, planDir), plan.adapters[0]!, run.adapters[0]!.sites, heldOut).loss);
    const logged = fs.readFileSync(path.join(planDir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(logged.filter((r) => "eval_loss" in r).map((r) => r["step"])).toEqual([3, 6, 7]);
    expect(logged.filter((r) => "loss" in r)).toHaveLength(7);
  });
});
