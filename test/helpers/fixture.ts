import * as fs from "node:fs";
import * as path from "node:path";
import { tempDir, TINY, writeLlamaFolder, writeSafetensors } from "./hf-model.js";

/** The tiny inline model most test jobs use: 2 layers, GQA 4/2 heads, q_proj is 16 x 16; max_seq leaves room for the default seq_len 512. */
export const TINY_MODEL = "model tiny { arch llama layers 2 hidden 16 heads 4 kv_heads 2 ffn 32 vocab 64 max_seq 1024 }";

/**
 * A folder of files test jobs point at: data, Hugging Face model folders good and broken,
 * and a PEFT adapter. Paths in jobs are relative to it.
 */
export function makeFixture(): string {
  const dir = tempDir("loraflow-fixture-");
  const write = (rel: string, content: string | Buffer) => {
    fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    fs.writeFileSync(path.join(dir, rel), content);
  };
  write("data/a.jsonl", ['{"input_ids": [1, 2, 3]}', '{"input_ids": [4, 5]}', "", '{"input_ids": [6]}'].join("\n") + "\n");
  write("data/b.jsonl", Array.from({ length: 20 }, (_, i) => `{"input_ids": [${i + 1}]}`).join("\n") + "\n");
  write("data/empty.jsonl", "\n\n");
  writeLlamaFolder(path.join(dir, "models/tiny"));
  writeLlamaFolder(path.join(dir, "models/tied"), { ...TINY, tie: true });
  writeLlamaFolder(path.join(dir, "models/sharded"), TINY, { shards: 3 });
  writeLlamaFolder(path.join(dir, "models/bad-shape"), TINY, {
    edit: (t) => t.map((x) => (x.name.endsWith("layers.1.self_attn.k_proj.weight") ? { ...x, shape: [16, 16] } : x)),
  });
  writeLlamaFolder(path.join(dir, "models/missing-tensor"), TINY, { edit: (t) => t.filter((x) => !x.name.includes("layers.0.mlp.up_proj")) });
  writeLlamaFolder(path.join(dir, "models/int8"), TINY, {
    edit: (t) => t.map((x) => (x.name.endsWith("layers.0.mlp.down_proj.weight") ? { ...x, dtype: "I8" } : x)),
  });
  writeLlamaFolder(path.join(dir, "models/config-only"));
  fs.rmSync(path.join(dir, "models/config-only/model.safetensors"));
  write("models/bad-json/config.json", "{ \"model_type\": \"llama\", ");
  writeLlamaFolder(path.join(dir, "models/no-layers"), TINY, { config: { num_hidden_layers: undefined, hidden_size: "16" } });
  writeLlamaFolder(path.join(dir, "models/gpt2"), TINY, { config: { model_type: "gpt2", attention_bias: true } });
  writeLlamaFolder(path.join(dir, "models/truncated"));
  const truncated = Buffer.alloc(16);
  truncated.writeBigUInt64LE(1000n);
  write("models/truncated/model.safetensors", truncated);
  writeLlamaFolder(path.join(dir, "models/bad-index"), TINY, { shards: 2 });
  fs.rmSync(path.join(dir, "models/bad-index/model-00002-of-00002.safetensors"));
  write("models/not-a-folder", "just a file");
  write("adapters/r4/adapter_config.json", JSON.stringify({ peft_type: "LORA", r: 4, lora_alpha: 8, target_modules: ["q_proj", "v_proj", "gate_proj"] }));
  writeSafetensors(path.join(dir, "adapters/r4/adapter_model.safetensors"), []);
  write("adapters/broken/adapter_config.json", "not json");
  return dir;
}
