import * as fs from "node:fs";
import * as path from "node:path";
import { weightShapes, type Plan } from "../../compiler/index.js";
import { trainByteLevelBpe } from "../data/bpe-train.js";
import { alpacaPrompt } from "../data/formats.js";
import { writeFileDurably } from "../output/atomic.js";
import { randomFor } from "../random.js";
import { encodeSafetensors, type Tensor } from "../weights/safetensors.js";
import { ALPACA_INSTRUCTION, ALPHABET } from "./tasks.js";

/** The demo model's shape: small enough to train three adapters on two CPU cores in minutes. */
export const DEMO_CONFIG: Plan["model"]["config"] = {
  layers: 4,
  hidden: 128,
  heads: 4,
  kvHeads: 2,
  headDim: 32,
  ffn: 256,
  vocab: 512,
  ropeTheta: 10000,
  normEps: 1e-5,
  tieEmbeddings: false,
  maxSeq: 160,
  ropeScaling: null,
};

/** A chat template in the style of Qwen's: role markers as special tokens, EOS ends each turn. */
export const DEMO_CHAT_TEMPLATE =
  "{{ bos_token }}{% for m in messages %}" +
  "{% if m.role not in ['system', 'user', 'assistant'] %}{{ raise_exception('unknown role: ' + m.role) }}{% endif %}" +
  "<|{{ m.role }}|>\n{{ m.content }}{{ eos_token }}\n{% endfor %}" +
  "{% if add_generation_prompt %}<|assistant|>\n{% endif %}";

/** The text the tokenizer learns its merges from: the demo's prompts and templates, and every symbol spaced. */
function tokenizerText(): string {
  const symbols = " " + (ALPHABET + ALPHABET.toUpperCase() + "0123456789").split("").join(" ");
  const prompts = [alpacaPrompt(ALPACA_INSTRUCTION, "a"), "reverse ", "add one to =", "The quick brown fox jumps over the lazy dog."].join("\n");
  // The prompts more often than the symbols: their words become few tokens, the symbols stay one each.
  return (symbols + "\n" + (prompts + "\n").repeat(4)).repeat(16);
}

/**
 * Writes a Hugging Face Llama folder: config.json, model.safetensors, tokenizer.json and
 * tokenizer_config.json (a byte-level BPE trained on the demo's own text, with a chat template).
 * The weights are random with unit gain (each matrix's entries of variance 1 / fan-in, the
 * embeddings of variance 1): not a language model, but one whose features carry signal, which
 * is what low-rank adapters need to learn a skill on a frozen base without pre-training.
 */
export function writeDemoModel(dir: string, seed: number): void {
  const c = DEMO_CONFIG;
  const tokenizer = trainByteLevelBpe(tokenizerText(), { vocabSize: c.vocab, special: ["<|bos|>", "<|eos|>", "<|system|>", "<|user|>", "<|assistant|>"], chatTemplate: DEMO_CHAT_TEMPLATE });
  const tensors = new Map<string, Tensor>();
  let index = 0;
  for (const [name, shape] of weightShapes(c)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    if (shape.length === 1) data.fill(1);
    else {
      const std = name === "model.embed_tokens.weight" ? 1 : 1 / Math.sqrt(shape[1]!);
      const r = randomFor(seed, 0xd3e0, index);
      for (let i = 0; i < n; i++) data[i] = std * Math.sqrt(-2 * Math.log(1 - r.next())) * Math.cos(2 * Math.PI * r.next());
    }
    index++;
    tensors.set(name, { shape, data });
  }
  const config = {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    hidden_act: "silu",
    num_hidden_layers: c.layers,
    hidden_size: c.hidden,
    num_attention_heads: c.heads,
    num_key_value_heads: c.kvHeads,
    head_dim: c.headDim,
    intermediate_size: c.ffn,
    vocab_size: c.vocab,
    rms_norm_eps: c.normEps,
    rope_theta: c.ropeTheta,
    max_position_embeddings: c.maxSeq,
    tie_word_embeddings: c.tieEmbeddings,
    torch_dtype: "float32",
  };
  fs.mkdirSync(dir, { recursive: true });
  writeFileDurably(path.join(dir, "config.json"), JSON.stringify(config, null, 2) + "\n");
  writeFileDurably(path.join(dir, "model.safetensors"), encodeSafetensors(tensors, { format: "pt" }));
  writeFileDurably(path.join(dir, "tokenizer.json"), tokenizer["tokenizer.json"]);
  writeFileDurably(path.join(dir, "tokenizer_config.json"), tokenizer["tokenizer_config.json"]);
}
