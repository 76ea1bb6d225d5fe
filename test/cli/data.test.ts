import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runPlan } from "../../runtime/run.js";
import { tempDir } from "../helpers/hf-model.js";
import { ROOT } from "../helpers/paths.js";
import { compileOrThrow } from "../helpers/train-job.js";
import { writeSmallTokenizer } from "../helpers/tokenizers.js";

let dir: string;
beforeAll(() => {
  dir = tempDir("loraflow-datacmd-");
  writeSmallTokenizer(path.join(dir, "tok"));
  const chats = [
    [{ role: "user", content: "Reverse hello" }, { role: "assistant", content: "olleh" }],
    [{ role: "system", content: "Be brief." }, { role: "user", content: "Upper-case quiet" }, { role: "assistant", content: "QUIET" }],
    [{ role: "user", content: "Add 12 and 30" }, { role: "assistant", content: "42" }, { role: "user", content: "Again?" }, { role: "assistant", content: "42 again" }],
  ];
  fs.writeFileSync(path.join(dir, "chat.jsonl"), chats.map((messages) => JSON.stringify({ messages })).join("\n") + "\n");
  const alpaca = [
    { instruction: "Reverse the word", input: "fox", output: "xof" },
    { instruction: "Upper-case the word", input: "dog", output: "DOG" },
    { instruction: "The quick brown fox jumps over the lazy dog. ".repeat(12), output: "too long" },
  ];
  fs.writeFileSync(path.join(dir, "alpaca.jsonl"), alpaca.map((r) => JSON.stringify(r)).join("\n") + "\n");
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const MODEL = `model m { arch llama layers 2 hidden 16 heads 4 kv_heads 2 ffn 32 vocab 400 max_seq 128 dtype fp32 seed 3 tokenizer "tok" }`;
const job = (chat: string, alpaca: string) => `${MODEL}
adapter talk { rank 2 targets q_proj v_proj data "${chat}" seq_len 48 batch 2 steps 3 optimizer adamw { lr 1e-2 } seed 5 dropout 0.1 }
adapter words { rank 2 targets all data "${alpaca}" seq_len 120 batch 2 steps 3 pack true optimizer sgd { lr 0.1 momentum 0.9 } seed 6 }
plan { schedule 1f1b stages 2 }
cluster c { gpu cpu gpus 2 }`;

function loraflow(...args: string[]) {
  const r = spawnSync(process.execPath, [path.join(ROOT, "bin", "loraflow.js"), ...args], { cwd: dir, encoding: "utf8", timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("loraflow data", () => {
  it("prints a summary per adapter, and with --show the examples decoded with what is trained marked", () => {
    fs.writeFileSync(path.join(dir, "text.lf"), job("chat.jsonl", "alpaca.jsonl").replace('data "chat.jsonl"', 'data "chat.jsonl" format chat').replace('data "alpaca.jsonl"', 'data "alpaca.jsonl" format alpaca'));
    const r = loraflow("data", "text.lf", "--show", "3", "--adapter", "talk");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/adapter\s+format\s+examples\s+tokens\s+counted\s+truncated\s+dropped\s+skipped\s+held out\n\s+talk\s+chat\s+3\s+\d+\s+\d+\s+0\s+0\s+0\s+0/);
    expect(r.stdout).toContain("<|user|>\nReverse hello<|eos|>\n<|assistant|>\n⟦olleh<|eos|>⟧\n");
    expect(r.stdout).toContain("<|assistant|>\n⟦42<|eos|>⟧\n<|user|>\nAgain?<|eos|>\n<|assistant|>\n⟦42 again<|eos|>⟧");
    const all = loraflow("data", "text.lf");
    expect(all.stdout).toMatch(/words\s+alpaca\s+2\s+\d+\s+\d+\s+1\s+1\s+0\s+0/);
  });

  it("-o writes tokens JSONL that trains to the same bits as the text it came from", async () => {
    const r = loraflow("data", "text.lf", "-o", "exported");
    expect(r.code, r.stderr).toBe(0);
    expect(fs.readdirSync(path.join(dir, "exported")).sort()).toEqual(["talk.jsonl", "words.jsonl"]);
    // Written again over its own output: replaced.
    expect(loraflow("data", "text.lf", "-o", "exported").code).toBe(0);

    const fromText = compileOrThrow(fs.readFileSync(path.join(dir, "text.lf"), "utf8"), { baseDir: dir, planDir: path.join(dir, "plan-text") });
    const tokensJob = job("exported/talk.jsonl", "exported/words.jsonl").replace('data "exported/talk.jsonl"', 'data "exported/talk.jsonl" format tokens').replace('data "exported/words.jsonl"', 'data "exported/words.jsonl" format tokens');
    const fromTokens = compileOrThrow(tokensJob, { baseDir: dir, planDir: path.join(dir, "plan-tokens") });
    const a = await runPlan(fromText, path.join(dir, "plan-text"), { save: false });
    const b = await runPlan(fromTokens, path.join(dir, "plan-tokens"), { save: false });
    for (let i = 0; i < 2; i++) {
      for (const [site, w] of Object.entries(a.adapters[i]!.sites)) {
        expect(Buffer.from(w.A.buffer).equals(Buffer.from(b.adapters[i]!.sites[site]!.A.buffer)), `${site}.A`).toBe(true);
        expect(Buffer.from(w.B.buffer).equals(Buffer.from(b.adapters[i]!.sites[site]!.B.buffer)), `${site}.B`).toBe(true);
      }
    }
  });

  it("refuses to overwrite a file that is not its own, and names an unknown adapter", () => {
    const r = loraflow("data", "text.lf", "--adapter", "talk", "-o", "chat.jsonl");
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/error LF6004: chat\.jsonl exists and holds more than `tokens` examples/);
    expect(fs.readFileSync(path.join(dir, "chat.jsonl"), "utf8")).toContain("Reverse hello");
    expect(loraflow("data", "text.lf", "--adapter", "nope").stderr).toMatch(/no adapter "nope"; this job has talk, words/);
  });
});
