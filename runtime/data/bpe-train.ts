/**
 * Trains a small byte-level BPE tokenizer (GPT-2's scheme, which Llama 3 and Qwen use) on a text
 * and writes it as Hugging Face files: tokenizer.json (every byte is a token, so any text
 * encodes; merges learnt from the text), and tokenizer_config.json with the special tokens and a
 * chat template. For models made from nothing (the demo, tests): `AutoTokenizer` and
 * @huggingface/tokenizers both read the result.
 */

/** GPT-2's printable stand-ins for the 256 byte values. */
function byteToUnicode(): string[] {
  const out = new Array<string>(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    out[b] = String.fromCodePoint(printable ? b : 256 + extra++);
  }
  return out;
}

/** GPT-2's pre-tokenizer pattern (the one ByteLevel's `use_regex` applies). */
const WORDS = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

export interface BpeOptions {
  /** Tokens in all: 256 bytes, the merges, then the special tokens. */
  vocabSize: number;
  /** Special tokens, in id order after the merges; the first is BOS, the second EOS. */
  special: string[];
  /** Jinja chat template for tokenizer_config.json. */
  chatTemplate: string;
}

export interface TokenizerFiles {
  "tokenizer.json": string;
  "tokenizer_config.json": string;
}

/** Learns merges from `text` until the vocabulary has vocabSize tokens, or no pair repeats. */
export function trainByteLevelBpe(text: string, options: BpeOptions): TokenizerFiles {
  const table = byteToUnicode();
  const encoder = new TextEncoder();
  const counts = new Map<string, number>();
  for (const m of text.matchAll(WORDS)) counts.set(m[0], (counts.get(m[0]) ?? 0) + 1);
  const words = [...counts].map(([w, n]) => ({ symbols: [...encoder.encode(w)].map((b) => table[b]!), n }));
  const vocab = new Map<string, number>(table.map((s, i) => [s, i]));
  const merges: [string, string][] = [];
  const room = options.vocabSize - 256 - options.special.length;
  while (merges.length < room) {
    const pairs = new Map<string, number>();
    for (const w of words) {
      for (let i = 0; i + 1 < w.symbols.length; i++) {
        const key = w.symbols[i] + "\u0000" + w.symbols[i + 1];
        pairs.set(key, (pairs.get(key) ?? 0) + w.n);
      }
    }
    // The most frequent pair; ties go to the smaller key, so the result depends on the text alone.
    let best: string | undefined;
    let bestCount = 1;
    for (const [key, n] of pairs) if (n > bestCount || (n === bestCount && best !== undefined && key < best)) [best, bestCount] = [key, n];
    if (best === undefined) break;
    const [a, b] = best.split("\u0000") as [string, string];
    merges.push([a, b]);
    vocab.set(a + b, vocab.size);
    for (const w of words) {
      const s = w.symbols;
      const merged: string[] = [];
      for (let i = 0; i < s.length; i++) {
        if (i + 1 < s.length && s[i] === a && s[i + 1] === b) {
          merged.push(a + b);
          i++;
        } else merged.push(s[i]!);
      }
      w.symbols = merged;
    }
  }
  const added = options.special.map((content, i) => ({ id: vocab.size + i, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }));
  const [bos, eos] = options.special as [string, string];
  const bosId = added[0]!.id;
  const tokenizer = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    // Sequences start with BOS, as Llama's do; `add_special_tokens=False` leaves it out.
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      pair: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: bos, type_id: 1 } }, { Sequence: { id: "B", type_id: 1 } }],
      special_tokens: { [bos]: { id: bos, ids: [bosId], tokens: [bos] } },
    },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab: Object.fromEntries(vocab),
      merges: merges.map(([a, b]) => `${a} ${b}`),
    },
  };
  const config = {
    tokenizer_class: "PreTrainedTokenizerFast",
    bos_token: bos,
    eos_token: eos,
    pad_token: eos,
    model_max_length: 1 << 20,
    clean_up_tokenization_spaces: false,
    added_tokens_decoder: Object.fromEntries(added.map((t) => [String(t.id), { content: t.content, lstrip: false, normalized: false, rstrip: false, single_word: false, special: true }])),
    chat_template: options.chatTemplate,
  };
  return { "tokenizer.json": JSON.stringify(tokenizer), "tokenizer_config.json": JSON.stringify(config, null, 2) + "\n" };
}
