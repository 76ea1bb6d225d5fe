import * as path from "node:path";
import { compile } from "../../compiler/index.js";
import type { ChatMessage } from "../../runtime/data/tokenizer.js";
import { RunError } from "../../runtime/errors.js";
import { generate, loadModel, promptIds } from "../../runtime/generate.js";
import { adapterSettings } from "../adapter-settings.js";
import { print, printError } from "../output.js";

export interface GenerateFlags {
  model: string;
  adapter?: string;
  prompt?: string;
  chat?: string;
  maxTokens?: number;
  temperature?: number;
  topP?: number;
  seed?: number;
}

/** `--chat`: a JSON list of {role, content}, checked here so that a bad one names what is wrong. */
function parseChat(text: string): ChatMessage[] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new RunError("dataInvalid", `--chat is not JSON (${(e as Error).message.split("\n")[0]})`);
  }
  if (!Array.isArray(value) || value.length === 0) throw new RunError("dataInvalid", '--chat must be a list of messages, [{"role": "user", "content": "..."}, ...]');
  return value.map((m, i) => {
    if (typeof m !== "object" || m === null || typeof (m as ChatMessage).role !== "string" || typeof (m as ChatMessage).content !== "string") {
      throw new RunError("dataInvalid", `--chat message ${i} must be {"role": "...", "content": "..."}`);
    }
    return { role: (m as ChatMessage).role, content: (m as ChatMessage).content };
  });
}

/**
 * `loraflow generate`: continues a prompt (or a conversation, through the chat template) with a
 * Hugging Face model and optionally a PEFT adapter, greedy or sampled, on the CPU engine with a
 * KV cache, printing each token as it comes.
 */
export function generateCommand(flags: GenerateFlags): number {
  try {
    if ((flags.prompt === undefined) === (flags.chat === undefined)) throw new RunError("dataInvalid", "give --prompt TEXT or --chat JSON, one of them");
    const source = [`model gen { from ${JSON.stringify(path.resolve(flags.model))} }`, `adapter gen { steps 1 ${flags.adapter ? adapterSettings(flags.adapter) : "rank 1"} }`].join("\n");
    // Every path is the user's own flag, made absolute: planned from the root, nothing is linked.
    const root = path.parse(process.cwd()).root;
    const result = compile(source, { fileName: "<generate>", planDir: root });
    if (!result.plan) {
      const problems = result.diagnostics.filter((d) => d.severity === "error").map((d) => d.message.replace(/^adapter "gen": /, ""));
      printError(`loraflow generate: ${problems.join("\nloraflow generate: ")}\n`);
      return 1;
    }
    const model = loadModel(result.plan, root);
    const prompt = promptIds(model.tokenizer, flags.prompt !== undefined ? { text: flags.prompt } : { chat: parseChat(flags.chat!) });
    if (prompt.length + (flags.maxTokens ?? 128) > result.plan.model.config.maxSeq) {
      printError(`loraflow generate: warning: ${prompt.length} prompt tokens and ${flags.maxTokens ?? 128} new ones pass the model's max_seq ${result.plan.model.config.maxSeq}\n`);
    }
    generate(model, prompt, {
      ...(flags.maxTokens !== undefined && { maxTokens: flags.maxTokens }),
      ...(flags.temperature !== undefined && { temperature: flags.temperature }),
      ...(flags.topP !== undefined && { topP: flags.topP }),
      ...(flags.seed !== undefined && { seed: flags.seed }),
      onToken: (_, text) => print(text),
    });
    print("\n");
    return 0;
  } catch (e) {
    if (!(e instanceof RunError)) throw e;
    printError(`loraflow generate: error ${e.code}: ${e.message}\n`);
    return 1;
  }
}
