import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { Diagnostics } from "../../compiler/index.js";
import { AdapterOutput } from "../../runtime/output/adapter-output.js";
import { tempDir, TINY, writeLlamaFolder, writeSafetensors } from "../helpers/hf-model.js";
import { ROOT } from "../helpers/paths.js";
import { writeTokenData } from "../helpers/train-job.js";

/**
 * One case per defect of the hardening issue, each run as a user runs loraflow (a child process
 * with a time limit, so a hang fails the test): what it prints, its exit code, and that nothing
 * outside what loraflow may write changed.
 */

const MODEL = "model tiny { arch llama layers 2 hidden 16 heads 4 kv_heads 2 ffn 32 vocab 64 max_seq 64 dtype fp32 }";
const ADAPTER = (extra = "", steps = 2) => `adapter a { data "data.jsonl" format tokens seq_len 16 batch 2 micro_batch 1 steps ${steps} ${extra} }`;

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

/** A folder with data.jsonl, a Hugging Face model folder `model/` and job.lf. */
function workspace(job = `${MODEL}\n${ADAPTER()}`): string {
  const dir = tempDir("loraflow-hard-");
  dirs.push(dir);
  writeTokenData(path.join(dir, "data.jsonl"), 12, TINY.vocab, 5);
  writeLlamaFolder(path.join(dir, "model"));
  fs.writeFileSync(path.join(dir, "job.lf"), job);
  return dir;
}

function loraflow(cwd: string, ...args: string[]) {
  const r = spawnSync(process.execPath, [path.join(ROOT, "bin", "loraflow.js"), ...args], { cwd, encoding: "utf8", timeout: 60_000 });
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

/** Every file below a folder with its bytes (links as their targets). */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of fs.readdirSync(dir, { recursive: true, withFileTypes: true })) {
    const full = path.join(e.parentPath, e.name);
    if (e.isSymbolicLink()) out[path.relative(dir, full)] = `-> ${fs.readlinkSync(full)}`;
    else if (e.isFile()) out[path.relative(dir, full)] = fs.readFileSync(full).toString("base64");
  }
  return out;
}

/** A clean refusal: the code, a message, no stack, no signal, nothing trained. */
function expectRefusal(r: ReturnType<typeof loraflow>, code: string, pattern: RegExp): void {
  expect(r.signal, r.stderr).toBeNull();
  expect(r.code, r.stderr).toBe(1);
  expect(r.stderr).toContain(code);
  expect(r.stderr).toMatch(pattern);
  expect(r.stderr).not.toMatch(/\n\s+at .*:\d+:\d+/);
  expect(r.stdout).not.toMatch(/step 1\//);
}

/** Compiles job.lf into out/job, then applies `edit` to the plan. */
function editedPlan(dir: string, edit: (plan: any) => void): string {
  expect(loraflow(dir, "compile", "job.lf").code).toBe(0);
  const file = path.join(dir, "out/job/plan.json");
  const plan = JSON.parse(fs.readFileSync(file, "utf8"));
  edit(plan);
  fs.writeFileSync(file, JSON.stringify(plan));
  return "out/job";
}

const covered = new Set<string>();
const refusal = (r: ReturnType<typeof loraflow>, code: string, pattern: RegExp) => {
  covered.add(code);
  expectRefusal(r, code, pattern);
};

describe("1: an out folder loraflow did not write is refused, never emptied", () => {
  it.each([
    { name: "the job's own folder", out: "." },
    { name: "the base model's folder", out: "model" },
  ])("out naming $name", ({ out }) => {
    const dir = workspace(`model m { from "model" }\n${ADAPTER(`out "${out}"`)}`);
    const before = snapshot(dir);
    const r = loraflow(dir, "run", "job.lf");
    refusal(r, "LF6004", /out folder .* holds .*which loraflow did not write/);
    const after = snapshot(dir);
    for (const [file, bytes] of Object.entries(before)) expect(after[file], file).toBe(bytes);
  });

  it("an adapter folder that some other tool wrote", () => {
    const dir = workspace(`${MODEL}\n${ADAPTER('out "theirs"')}`);
    fs.mkdirSync(path.join(dir, "theirs"));
    fs.writeFileSync(path.join(dir, "theirs/adapter_config.json"), "{}");
    writeSafetensors(path.join(dir, "theirs/adapter_model.safetensors"), []);
    const before = snapshot(path.join(dir, "theirs"));
    refusal(loraflow(dir, "run", "job.lf"), "LF6004", /out folder theirs holds an adapter_model\.safetensors loraflow did not write/);
    expect(snapshot(path.join(dir, "theirs"))).toEqual(before);
  });

  it("a rerun replaces its own earlier adapter, and the earlier run's checkpoints with it", () => {
    const dir = workspace(`${MODEL}\nadapter a { data "data.jsonl" format tokens seq_len 16 batch 2 micro_batch 1 steps 6 save_every 2 }`);
    expect(loraflow(dir, "run", "job.lf").code).toBe(0);
    expect(fs.readdirSync(path.join(dir, "out/job/adapters/a")).sort()).toEqual(["adapter_config.json", "adapter_model.safetensors", "checkpoint-2", "checkpoint-4", "checkpoint-6"]);
    const r = loraflow(dir, "run", "job.lf", "--max-steps", "3");
    expect(r.code, r.stderr).toBe(0);
    expect(fs.readdirSync(path.join(dir, "out/job/adapters/a")).sort()).toEqual(["adapter_config.json", "adapter_model.safetensors", "checkpoint-2", "checkpoint-3"]);
    expect(fs.readdirSync(path.join(dir, "out/job/adapters")).filter((n) => n.startsWith("."))).toEqual([]);
  });
});

describe("3: inputs outside the plan's folder", () => {
  it("are reached through the compile's links, and the adapter names the model folder itself", () => {
    const dir = workspace(`model m { from "model" }\n${ADAPTER('out "../elsewhere-out"')}`);
    const r = loraflow(dir, "run", "job.lf");
    expect(r.code, r.stderr).toBe(0);
    expect(fs.readlinkSync(path.join(dir, "out/job/inputs/model"))).toBe("../../../model");
    expect(fs.lstatSync(path.join(dir, "out/job/outputs/a")).isSymbolicLink()).toBe(true);
    const out = path.join(dir, "../elsewhere-out");
    dirs.push(out);
    const config = JSON.parse(fs.readFileSync(path.join(out, "adapter_config.json"), "utf8"));
    expect(config.base_model_name_or_path).toBe(fs.realpathSync(path.join(dir, "model")));
  });
});

describe("2, 5, 9, 10: a plan the engine would misread is refused when read", () => {
  it.each([
    { name: "sequences above micro_batch", edit: (p: any) => (p.schedule.phases[0].microBatches[0].parts[0].sequences = 3), pattern: /takes 3 sequences of adapter 0, whose micro_batch is 1/ },
    { name: "batch below its micro-batches", edit: (p: any) => (p.adapters[0].batch = 1), pattern: /are not its batch of 1/ },
    { name: "two micro-batches swapped, ids kept", edit: (p: any) => { const m = p.schedule.phases[0].microBatches; [m[0], m[1]] = [m[1], m[0]]; }, pattern: /micro-batch 0 has id 1/ },
    { name: "an absolute data path", edit: (p: any) => (p.adapters[0].data.path = "/etc/passwd"), pattern: /"\/etc\/passwd" is absolute/ },
    { name: "a data path that climbs", edit: (p: any) => (p.adapters[0].data.path = "../../data.jsonl"), pattern: /climbs out of the plan's folder/ },
    { name: "an out that climbs", edit: (p: any) => (p.adapters[0].out = "../../victim"), pattern: /climbs out of the plan's folder/ },
    { name: "seqLen 3e7", edit: (p: any) => (p.adapters[0].seqLen = 3e7), pattern: /seqLen: Too big/ },
    { name: "two adapters with one out", edit: (p: any) => p.adapters.push({ ...p.adapters[0], name: "b" }), pattern: /are the same folder or one holds the other/ },
    { name: "a rope_scaling the engine does not implement", edit: (p: any) => (p.model.config.ropeScaling = { rope_type: "yarn", factor: 4 }), pattern: /model\.config\.ropeScaling: rope_scaling "yarn"/ },
    { name: "steps unlike the schedule", edit: (p: any) => (p.adapters[0].steps = 5), pattern: /the schedule trains 2 steps of the 5 it declares/ },
  ])("$name", ({ edit, pattern }) => {
    const dir = workspace();
    fs.mkdirSync(path.join(dir, "victim"));
    fs.writeFileSync(path.join(dir, "victim/keep.txt"), "mine");
    const planDir = editedPlan(dir, edit);
    const r = loraflow(dir, "run", planDir);
    refusal(r, "LF5002", pattern);
    expect(fs.readdirSync(path.join(dir, "victim"))).toEqual(["keep.txt"]);
    expect(fs.existsSync(path.join(dir, "out/job/adapters"))).toBe(false);
  });

  it("a config.json with 10^6 layers is refused at once", () => {
    const dir = workspace(`model m { from "model" }\n${ADAPTER()}`);
    writeLlamaFolder(path.join(dir, "model"), TINY, { config: { num_hidden_layers: 1e6 } });
    const started = Date.now();
    const r = loraflow(dir, "compile", "job.lf");
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/error LF3003: .*`num_hidden_layers` is 1000000, above the 1024 loraflow takes/);
    expect(Date.now() - started).toBeLessThan(20_000);
  });

  it.each([
    { scaling: { rope_type: "yarn", factor: 4 }, pattern: /error LF2013: .*unsupported rope_scaling "yarn" \(loraflow implements linear and llama3\)/ },
    { scaling: { rope_type: "llama3", factor: 8 }, pattern: /error LF3003: .*`rope_scaling` of type llama3 needs `low_freq_factor`, a positive number/ },
  ])("rope_scaling $scaling.rope_type that the engine would not apply is refused, not ignored", ({ scaling, pattern }) => {
    const dir = workspace(`model m { from "model" }\n${ADAPTER()}`);
    writeLlamaFolder(path.join(dir, "model"), TINY, { config: { rope_scaling: scaling } });
    expect(loraflow(dir, "compile", "job.lf").stderr).toMatch(pattern);
  });

  it("a plan that asks for more memory than the machine has is refused before it allocates", () => {
    const dir = workspace();
    const planDir = editedPlan(dir, (p) => {
      // 2^31 steps of 2 sequences: the step order alone would be 16 GB, on both sides of the binding.
      p.schedule.phases[0].rounds *= 2 ** 30;
      p.adapters[0].steps *= 2 ** 30;
    });
    refusal(loraflow(dir, "run", planDir), "LF6007", /the run needs about .* in all/);
  });
});

describe("3, 10: files that are not what they claim", () => {
  it("a data file that is not JSONL is quoted by a short, escaped excerpt only", () => {
    const dir = workspace();
    fs.writeFileSync(path.join(dir, "data.jsonl"), "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\u001b[2Jsecret-line\n");
    const r = loraflow(dir, "run", "job.lf");
    refusal(r, "LF6001", /data\.jsonl:1: not valid JSON \(Unexpected token 'r'\): `root:x:0:0:root:\/root:\/b…`/);
    expect(r.stderr).not.toContain("daemon:x");
    expect(r.stderr).not.toContain("secret-line");
    expect(r.stderr).not.toContain("\u001b");
  });

  it("a data line nested deeply is a message, not a stack overflow", () => {
    const dir = workspace();
    fs.writeFileSync(path.join(dir, "data.jsonl"), `{"input_ids": [${"[".repeat(50_000)}${"]".repeat(50_000)}]}\n`);
    refusal(loraflow(dir, "run", "job.lf"), "LF6001", /data\.jsonl:1: `input_ids` has an array of 1 at index 0, not a whole number/);
  });

  it("terminal escapes in a job's names and paths reach the terminal escaped", () => {
    const dir = workspace(`${MODEL}\nadapter a { data "da\u001b]0;pwned\u0007ta.jsonl" format tokens }`);
    const r = loraflow(dir, "compile", "job.lf");
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("\\x1b]0;pwned\\x07");
    expect(r.stderr).not.toMatch(/[\u0000-\u0008\u000b-\u001f]/);
  });

  it("a FIFO in place of the weights is refused, not waited on", () => {
    const dir = workspace(`model m { from "model" }\n${ADAPTER()}`);
    expect(loraflow(dir, "compile", "job.lf").code).toBe(0);
    fs.rmSync(path.join(dir, "model/model.safetensors"));
    expect(spawnSync("mkfifo", [path.join(dir, "model/model.safetensors")]).status).toBe(0);
    refusal(loraflow(dir, "run", "out/job"), "LF6002", /model\.safetensors cannot be read \(ENOTREG\)/);
  });

  it("compile -o into /proc returns with an error", () => {
    const dir = workspace();
    const r = loraflow(dir, "compile", "job.lf", "-o", "/proc/self/plan");
    expect(r.signal).toBeNull();
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/error LF6004: cannot write \/proc\/self\/plan/);
  });

  it("weights whose headers changed after compile (a null entry, overlapping offsets)", () => {
    const dir = workspace(`model m { from "model" }\n${ADAPTER()}`);
    expect(loraflow(dir, "compile", "job.lf").code).toBe(0);
    const file = path.join(dir, "model/model.safetensors");
    const bytes = fs.readFileSync(file);
    const length = Number(bytes.readBigUInt64LE(0));
    const header = JSON.parse(bytes.subarray(8, 8 + length).toString());
    const edit = (change: (h: any) => void) => {
      const h = structuredClone(header);
      change(h);
      let json = JSON.stringify(h);
      json += " ".repeat(Math.max(0, length - json.length));
      const head = Buffer.alloc(8);
      head.writeBigUInt64LE(BigInt(json.length));
      fs.writeFileSync(file, Buffer.concat([head, Buffer.from(json), bytes.subarray(8 + length)]));
    };
    edit((h) => (h["model.norm.weight"] = null));
    refusal(loraflow(dir, "run", "out/job"), "LF6002", /`model\.norm\.weight` with an entry that is not an object/);
    edit((h) => (h["model.norm.weight"].data_offsets = h["lm_head.weight"].data_offsets.map((o: number, i: number) => (i === 0 ? o : o - h["lm_head.weight"].data_offsets[1] + h["lm_head.weight"].data_offsets[0] + 64))));
    const r = loraflow(dir, "run", "out/job");
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/error LF6002: .*(overlapping|no tensor holds)/);
  });
});

describe("6, 8: what a run finds too late, or trains into nonsense", () => {
  it("an out folder that cannot be made fails before training", () => {
    const dir = workspace(`${MODEL}\n${ADAPTER('out "data.jsonl/a"')}`);
    refusal(loraflow(dir, "run", "job.lf"), "LF6004", /cannot write beside out folder/);
  });

  it("one NaN in the base weights is refused, and nothing is written", () => {
    const dir = workspace(`model m { from "model" }\n${ADAPTER()}`);
    writeLlamaFolder(path.join(dir, "model"), TINY, { edit: (t) => t.map((x) => (x.name === "model.norm.weight" ? { ...x, data: [0, NaN, ...new Array(14).fill(1)] } : x)) });
    refusal(loraflow(dir, "run", "job.lf"), "LF6002", /base weight `model\.norm\.weight` holds a value that is not finite \(nan\) at index 1/);
    expect(fs.existsSync(path.join(dir, "out/job/adapters"))).toBe(false);
  });

  it("a loss that is no longer finite stops the run, naming the adapter and step, and writes nothing", () => {
    // Finite weights whose products are not: the forward overflows to inf, and the loss to NaN.
    const dir = workspace(`model m { from "model" }\n${ADAPTER("save_every 1", 4)}`);
    writeLlamaFolder(path.join(dir, "model"), TINY, {
      edit: (t) => t.map((x) => {
        const n = x.shape.reduce((p, q) => p * q, 1);
        if (x.name === "model.embed_tokens.weight" || x.name === "model.norm.weight") return { ...x, data: new Array(n).fill(1) };
        return x.name === "lm_head.weight" ? { ...x, data: new Array(n).fill(3e38) } : x;
      }),
    });
    const r = loraflow(dir, "run", "job.lf");
    refusal({ ...r, stdout: "" }, "LF6006", /adapter a: the (loss|gradient norm) of step \d+ is not finite/);
    expect(fs.existsSync(path.join(dir, "out/job/adapters/a"))).toBe(false);
  });

  it("data with no counted token is refused by run and by eval", () => {
    const dir = workspace(`model m { from "model" }\n${ADAPTER()}`);
    fs.writeFileSync(path.join(dir, "data.jsonl"), '{"input_ids": [1, 2, 3], "labels": [-100, -100, -100]}\n');
    refusal(loraflow(dir, "run", "job.lf"), "LF6001", /data\.jsonl: none of its 1 examples has a counted token; 1 left nothing to train on/);
    const r = loraflow(dir, "eval", "--model", "model", "--data", "data.jsonl", "--json");
    refusal(r, "LF6009", /nothing to evaluate/);
    expect(r.stdout).toBe("");
  });

  it("an init adapter with no tensors, or a transposed lora_A, is refused", () => {
    const dir = workspace(`model m { from "model" }\n${ADAPTER('rank 2 targets q_proj init "init"')}`);
    fs.mkdirSync(path.join(dir, "init"));
    fs.writeFileSync(path.join(dir, "init/adapter_config.json"), JSON.stringify({ peft_type: "LORA", r: 2, target_modules: ["q_proj"] }));
    writeSafetensors(path.join(dir, "init/adapter_model.safetensors"), []);
    expect(loraflow(dir, "compile", "job.lf").stderr).toMatch(/error LF3009: .*`base_model\.model\.model\.layers\.0\.self_attn\.q_proj\.lora_A\.weight` is missing/);
    const key = (l: number, w: string) => `base_model.model.model.layers.${l}.self_attn.q_proj.lora_${w}.weight`;
    const good = [0, 1].flatMap((l) => [{ name: key(l, "A"), dtype: "F32" as const, shape: [2, 16] }, { name: key(l, "B"), dtype: "F32" as const, shape: [16, 2] }]);
    writeSafetensors(path.join(dir, "init/adapter_model.safetensors"), good);
    expect(loraflow(dir, "compile", "job.lf").code).toBe(0);
    // Changed after compile: the run checks again.
    writeSafetensors(path.join(dir, "init/adapter_model.safetensors"), good.map((t, i) => (i === 0 ? { ...t, shape: [16, 2] } : t)));
    refusal(loraflow(dir, "run", "out/job"), "LF6003", /lora_A\.weight` is \[16, 2\], expected \[2, 16\] \(transposed\)/);
  });

  it("examples longer than seq_len are cut with a warning", () => {
    const dir = workspace(`${MODEL}\nadapter a { data "data.jsonl" format tokens seq_len 4 batch 2 steps 1 }`);
    const r = loraflow(dir, "run", "job.lf");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/warning LF6101: adapter "a": \d+ examples are longer than seq_len 4 and were cut to fit/);
    covered.add("LF6101");
  });

  it("--resume with nothing to resume, or with another step limit, is refused before training", () => {
    const dir = workspace(`${MODEL}\n${ADAPTER("save_every 1", 4)}\nplan { schedule 1f1b }`);
    refusal(loraflow(dir, "run", "job.lf", "--resume"), "LF6013", /nothing to resume: .*out\/job\/resume holds no checkpoint/);
    expect(loraflow(dir, "run", "out/job", "--max-steps", "2").code).toBe(0);
    refusal(loraflow(dir, "run", "out/job", "--resume"), "LF6013", /was written by a run with --max-steps 2; resume with the same/);
  });

  it("text data without a tokenizer is refused before anything is read", () => {
    const dir = workspace(`${MODEL}\nadapter a { data "data.jsonl" format alpaca }`);
    refusal(loraflow(dir, "run", "job.lf"), "LF6012", /needs a tokenizer, and the model has none/);
    // A model folder without tokenizer.json: a warning at compile, a refusal at run.
    const folder = workspace(`model m { from "model" }\nadapter a { data "data.jsonl" format chat steps 1 }`);
    expect(loraflow(folder, "compile", "job.lf").stderr).toMatch(/warning LF3010: adapter "a": format chat is tokenized with a tokenizer.json, which model lacks/);
    refusal(loraflow(folder, "run", "out/job"), "LF6012", /model\/tokenizer\.json: does not exist/);
  });

  it("examples with no counted token are dropped, and bad lines skipped, with warnings", () => {
    const dir = workspace(`${MODEL}\n${ADAPTER("skip_bad_lines true")}`);
    fs.appendFileSync(path.join(dir, "data.jsonl"), '{"input_ids": [1, 2], "labels": [1, -100]}\nnot json\n{"input_ids": "x"}\n');
    const r = loraflow(dir, "run", "job.lf");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/warning LF6103: adapter "a": 1 example has no counted token and was left out/);
    expect(r.stderr).toMatch(/warning LF6104: adapter "a": 2 bad lines were skipped: .*data\.jsonl:14: not valid JSON .*; .*data\.jsonl:15: `input_ids` is the string "x", not an array/);
    covered.add("LF6103");
    covered.add("LF6104");
  });

  it("a backend that cannot run here is refused, saying why, before training", () => {
    const dir = workspace();
    const r = loraflow(dir, "run", "job.lf", "--backend", "cuda");
    refusal(r, "LF6011", /--backend cuda: (no usable CUDA driver|this build of loraflow has no CUDA backend)/);
    expect(fs.existsSync(path.join(dir, "out/job/adapters"))).toBe(false);
  });
});

describe("7: progress output cannot kill a run", () => {
  it("`loraflow run ... | head -1` trains to the end and writes the adapter", async () => {
    const dir = workspace();
    const child = spawn(process.execPath, [path.join(ROOT, "bin", "loraflow.js"), "run", "job.lf"], { cwd: dir, stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    child.stdout.once("data", () => child.stdout.destroy());
    const code = await new Promise<number | null>((resolve) => child.on("close", (c) => resolve(c)));
    expect(stderr).toBe("");
    expect(code).toBe(0);
    expect(fs.readdirSync(path.join(dir, "out/job/adapters/a")).sort()).toEqual(["adapter_config.json", "adapter_model.safetensors"]);
  });
});

describe("what a stopped run left is put right by the next", () => {
  it("a dead writer's staging folder beside the out folder is removed, with a warning", () => {
    const dir = workspace();
    fs.mkdirSync(path.join(dir, "out/job/adapters/.a.loraflow-tmp-999999999-0/checkpoint-1"), { recursive: true });
    const r = loraflow(dir, "run", "job.lf");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/warning LF6102: removed .*\.a\.loraflow-tmp-999999999-0, left by a run that was stopped/);
    expect(fs.readdirSync(path.join(dir, "out/job/adapters"))).toEqual(["a"]);
    covered.add("LF6102");
  });

  it("a final save that fails puts the weights in a fallback folder the error names", () => {
    const dir = tempDir("loraflow-hard-");
    dirs.push(dir);
    fs.mkdirSync(path.join(dir, "a"));
    const output = new AdapterOutput("a", path.join(dir, "a"), () => {
      throw Object.assign(new Error("EIO"), { code: "EIO" });
    });
    fs.writeFileSync(path.join(dir, "a/adapter_config.json"), "{}");
    expect(() => output.prepare()).toThrow(/LF6004|without adapter_model/);
    fs.rmSync(path.join(dir, "a/adapter_config.json"));
    output.prepare();
    let error: unknown;
    try {
      output.finish({ config: "{}\n", weights: new Uint8Array([8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32]) });
    } catch (e) {
      error = e;
    }
    expect((error as { code?: string }).code).toBe("LF6005");
    const rescued = /the trained weights are in (\S+)$/.exec((error as Error).message)?.[1];
    expect(fs.readdirSync(rescued!).sort()).toEqual(["adapter_config.json", "adapter_model.safetensors"]);
    covered.add("LF6005");
  });
});

it("every LF6 code has a case above", () => {
  const lf6 = Object.values(Diagnostics).map((d) => d.code).filter((c) => c.startsWith("LF6"));
  // LF6008 (the engine refusing its input, or a deadlock) cannot be reached through readPlan:
  // test/runtime/engine-boundary.test.ts hands the engine such plans directly.
  expect(lf6.filter((c) => !covered.has(c) && c !== "LF6008")).toEqual([]);
  expect(fs.readFileSync(path.join(ROOT, "test/runtime/engine-boundary.test.ts"), "utf8")).toContain('"LF6008"');
});
