import * as fs from "node:fs";
import * as path from "node:path";
import { Template } from "@huggingface/jinja";
import { Tokenizer } from "@huggingface/tokenizers";
import { readRegularFile } from "../../compiler/index.js";
import { jsonSyntaxReason } from "../../dsl/index.js";
import { RunError } from "../errors.js";

export interface ChatMessage {
  role: string;
  content: string;
}

/**
 * A Hugging Face tokenizer folder (tokenizer.json, tokenizer_config.json) as loraflow uses it:
 * text to ids without special tokens (loraflow places BOS and EOS itself, so that BOS appears
 * once whatever the template writes), the two special ids, and the chat template.
 */
export interface TextTokenizer {
  folder: string;
  /** Ids of `text`, special tokens written in it recognised, none added. */
  encode(text: string): number[];
  decode(ids: readonly number[]): string;
  /** The id a sequence starts with, when this tokenizer starts sequences with one (Llama: yes, Qwen: no). */
  bos: number | null;
  eos: number | null;
  bosText: string | null;
  eosText: string | null;
  /** An added token marked special (BOS, EOS, a template's role and end-of-turn markers). */
  isSpecial(id: number): boolean;
  /** Renders a conversation with tokenizer_config.json's chat_template; throws when there is none. */
  renderChat(messages: readonly ChatMessage[], addGenerationPrompt: boolean): string;
  hasChatTemplate: boolean;
  /** The largest id the tokenizer can produce, plus one. */
  size: number;
}

function readJson(file: string, what: string): Record<string, unknown> {
  let text: string;
  try {
    text = readRegularFile(file).toString("utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new RunError("tokenizerInvalid", `${file}: ${code === "ENOENT" ? "does not exist" : `cannot be read (${code ?? (e as Error).message})`}; ${what}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new RunError("tokenizerInvalid", `${file}: not valid JSON (${jsonSyntaxReason(e)})`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new RunError("tokenizerInvalid", `${file}: not a JSON object`);
  return value as Record<string, unknown>;
}

/** `bos_token` and `eos_token` are a string or an AddedToken object `{content: ...}`. */
function tokenText(value: unknown): string | null {
  if (typeof value === "string") return value;
  if (typeof value === "object" && value !== null && typeof (value as { content?: unknown }).content === "string") return (value as { content: string }).content;
  return null;
}

/** `chat_template` is one template, or a list of named ones of which `default` is used. */
function chatTemplateSource(config: Record<string, unknown>): string | null {
  const t = config["chat_template"];
  if (typeof t === "string") return t;
  if (Array.isArray(t)) {
    const named = t.find((x) => typeof x === "object" && x !== null && (x as { name?: unknown }).name === "default") as { template?: unknown } | undefined;
    if (typeof named?.template === "string") return named.template;
  }
  return null;
}

const loaded = new Map<string, TextTokenizer>();

/** Loads (once per process and folder) the tokenizer in `folder`. */
export function loadTokenizer(folder: string): TextTokenizer {
  const tokenizerFile = path.join(folder, "tokenizer.json");
  const configFile = path.join(folder, "tokenizer_config.json");
  // Keyed by the files' identity too: a folder whose tokenizer changed is read again.
  const stamp = (f: string) => {
    const st = fs.statSync(f, { throwIfNoEntry: false });
    return st === undefined ? "-" : `${st.ino}:${st.size}:${st.mtimeMs}`;
  };
  const key = `${path.resolve(folder)}|${stamp(tokenizerFile)}|${stamp(configFile)}`;
  const cached = loaded.get(key);
  if (cached) return cached;
  const json = readJson(tokenizerFile, "text data (alpaca, completion, chat) is tokenized with the model folder's tokenizer.json");
  const config = fs.existsSync(configFile) ? readJson(configFile, "") : {};
  let tokenizer: Tokenizer;
  try {
    tokenizer = new Tokenizer(json, config);
  } catch (e) {
    throw new RunError("tokenizerInvalid", `${tokenizerFile}: not a tokenizer this version of @huggingface/tokenizers reads (${(e as Error).message})`);
  }
  const idOf = (text: string | null, name: string): number | null => {
    if (text === null) return null;
    const id = tokenizer.token_to_id(text);
    if (id === undefined) throw new RunError("tokenizerInvalid", `${configFile}: ${name} ${JSON.stringify(text)} is not a token of ${tokenizerFile}`);
    return id;
  };
  const bosText = tokenText(config["bos_token"]);
  const eosText = tokenText(config["eos_token"]);
  const bosId = idOf(bosText, "bos_token");
  const eos = idOf(eosText, "eos_token");
  // Whether sequences start with BOS: tokenizer_config's add_bos_token where it says, else what the
  // post-processor does (Llama 3's adds it through TemplateProcessing; Qwen's has no BOS).
  let bos: number | null = null;
  if (bosId !== null) {
    const explicit = config["add_bos_token"];
    const added = typeof explicit === "boolean" ? explicit : tokenizer.encode("a", { add_special_tokens: true }).ids[0] === bosId && tokenizer.encode("a", { add_special_tokens: false }).ids[0] !== bosId;
    bos = added ? bosId : null;
  }
  const templateSource = chatTemplateSource(config);
  let template: Template | null = null;
  let templateError: string | null = null;
  if (templateSource !== null) {
    try {
      template = new Template(templateSource);
    } catch (e) {
      templateError = (e as Error).message;
    }
  }
  const special = new Set<number>();
  for (const [id, token] of tokenizer.get_added_tokens_decoder()) if (token.special) special.add(id);
  const vocab = tokenizer.get_vocab(true);
  let size = 0;
  for (const id of vocab.values()) size = Math.max(size, id + 1);
  const t: TextTokenizer = {
    folder,
    encode: (text) => tokenizer.encode(text, { add_special_tokens: false }).ids,
    decode: (ids) => (ids.length === 0 ? "" : tokenizer.decode([...ids], { skip_special_tokens: false })),
    bos,
    eos,
    bosText,
    eosText,
    isSpecial: (id) => special.has(id),
    hasChatTemplate: template !== null,
    size,
    renderChat(messages, addGenerationPrompt) {
      if (template === null) {
        throw new Error(templateError === null ? `${configFile} has no chat_template` : `the chat_template of ${configFile} does not parse (${templateError})`);
      }
      return template.render({ messages: messages.map((m) => ({ ...m })), add_generation_prompt: addGenerationPrompt, bos_token: bosText ?? "", eos_token: eosText ?? "" });
    },
  };
  loaded.set(key, t);
  return t;
}
