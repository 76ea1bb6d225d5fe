import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { tempDir, writeLlamaFolder, type TinyConfig } from "../helpers/hf-model.js";
import { ROOT } from "../helpers/paths.js";
import { writeSmallTokenizer } from "../helpers/tokenizers.js";

const CONFIG: TinyConfig = { layers: 2, hidden: 16, heads: 4, kvHeads: 2, ffn: 32, vocab: 400 };

let dir: string;
beforeAll(() => {
  dir = tempDir("loraflow-gencli-");
  // Random weights (unit norms), and the small tokenizer beside them.
  writeLlamaFolder(path.join(dir, "model"), CONFIG, {
    edit: (tensors) => tensors.map((t, k) => ({ ...t, data: Array.from({ length: t.shape.reduce((a, b) => a * b, 1) }, (_, i) => (t.shape.length === 1 ? 1 : Math.sin(7 * i + k) * 0.3)) })),
  });
  writeSmallTokenizer(path.join(dir, "model"));
  writeLlamaFolder(path.join(dir, "bare"), CONFIG);
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const loraflow = (...args: string[]) => spawnSync(process.execPath, [path.join(ROOT, "bin", "loraflow.js"), ...args], { cwd: dir, encoding: "utf8", timeout: 60_000 });

describe("loraflow generate", () => {
  it("continues a prompt and a conversation, greedy by default, the same text every time", () => {
    const a = loraflow("generate", "--model", "model", "--prompt", "The quick brown", "--max-tokens", "12");
    expect(a.status, a.stderr).toBe(0);
    expect(a.stdout.length).toBeGreaterThan(1);
    expect(loraflow("generate", "--model", "model", "--prompt", "The quick brown", "--max-tokens", "12").stdout).toBe(a.stdout);
    const chat = loraflow("generate", "--model", "model", "--chat", '[{"role": "user", "content": "Reverse hello"}]', "--max-tokens", "6", "--temperature", "0.8", "--seed", "2");
    expect(chat.status, chat.stderr).toBe(0);
  });

  it.each([
    [["--prompt", "x", "--chat", "[]"], /give --prompt TEXT or --chat JSON, one of them/],
    [["--chat", "[{oops"], /--chat is not JSON/],
    [["--chat", '[{"role": "user"}]'], /--chat message 0 must be \{"role": "...", "content": "..."\}/],
    [["--chat", '[{"role": "tool", "content": "x"}]'], /the chat template failed: unknown role: tool/],
  ])("refuses %j with a clear message", (args, pattern) => {
    const r = loraflow("generate", "--model", "model", ...args);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(pattern);
  });

  it("a model folder without a tokenizer is refused, naming the file", () => {
    const r = loraflow("generate", "--model", "bare", "--prompt", "x");
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/error LF6012: .*bare\/tokenizer\.json: does not exist/);
  });
});
