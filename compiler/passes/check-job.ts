import { ARCH_LIMITS } from "../models/llama.js";
import * as path from "node:path";
import type { BlockAst, Span } from "../../dsl/index.js";
import { findProfile, DEFAULT_NET_BYTES_PER_SECOND } from "../devices.js";
import type { Ir, Pass, PassContext } from "../ir.js";
import type {
  AdapterSpec,
  ClusterSpec,
  DataFormat,
  Dtype,
  LlamaArch,
  LrSchedule,
  ModelSpec,
  OptimizerSpec,
  PlanSpec,
  ScheduleName,
} from "../job.js";
import { BodyValues } from "./read-values.js";

const ORIGIN: Span = { start: 0, end: 0, line: 1, col: 1 };

function blockLabel(block: BlockAst): string {
  return block.name ? `${block.kind} "${block.name.text}"` : block.kind;
}

function checkModel(block: BlockAst, ctx: PassContext): ModelSpec {
  const v = new BodyValues(block.body, ctx);
  const where = blockLabel(block);
  // Upper bounds keep planning time bounded whatever is typed; real models are far below them.
  const L = ARCH_LIMITS;
  const LIMITS: Record<string, number> = { layers: L.layers, hidden: L.hidden, heads: L.heads, kv_heads: L.kvHeads, head_dim: L.headDim, ffn: L.ffn, vocab: L.vocab, max_seq: L.maxSeq };
  const positive = (key: string) => {
    const n = v.ranged(key, 0, where, { min: 1, max: LIMITS[key]! });
    return n > 0 ? n : undefined;
  };
  const inline: Partial<LlamaArch> = {};
  const set = <K extends keyof LlamaArch>(key: K, value: LlamaArch[K] | undefined) => {
    if (value !== undefined) inline[key] = value;
  };
  set("layers", positive("layers"));
  set("hidden", positive("hidden"));
  set("heads", positive("heads"));
  set("kvHeads", positive("kv_heads"));
  set("headDim", positive("head_dim"));
  set("ffn", positive("ffn"));
  set("vocab", positive("vocab"));
  set("maxSeq", positive("max_seq"));
  if (v.has("rope_theta")) set("ropeTheta", v.ranged("rope_theta", 10000, where, { min: 0, exclusiveMin: true }));
  if (v.has("norm_eps")) set("normEps", v.ranged("norm_eps", 1e-6, where, { min: 0, exclusiveMin: true }));
  set("tieEmbeddings", v.bool("tie_embeddings"));

  const spec: ModelSpec = { name: block.name?.text ?? "model", span: block.kindSpan, spans: v.spans, inline, seed: v.ranged("seed", 0, where, { min: 0, max: 2 ** 32 - 1 }) };
  const from = v.text("from");
  if (from !== undefined) spec.from = path.resolve(ctx.baseDir, from);
  const tokenizer = v.text("tokenizer");
  if (tokenizer !== undefined) spec.tokenizer = path.resolve(ctx.baseDir, tokenizer);
  const dtype = v.text("dtype");
  if (dtype !== undefined) spec.dtype = dtype as Dtype;
  if (from === undefined) {
    const required = ["layers", "hidden", "heads", "ffn", "vocab"].filter((k) => !v.has(k));
    if (required.length > 0) {
      ctx.report(
        "missingProperty",
        `${where} needs \`from "FOLDER"\` or its architecture inline; missing ${required.map((k) => `\`${k}\``).join(", ")}`,
        block.kindSpan,
      );
    }
  }
  return spec;
}

function checkOptimizer(block: BlockAst, v: BodyValues, ctx: PassContext, where: string): OptimizerSpec {
  const kind = (v.text("optimizer") ?? "adamw") as OptimizerSpec["kind"];
  const prop = v.property("optimizer");
  const o = new BodyValues(prop?.block ?? { properties: [], span: block.span }, ctx);
  const owhere = `${where}, optimizer ${kind}`;
  // Defaults follow Hugging Face Trainer's, so a job without settings trains like a Trainer run.
  const spec: OptimizerSpec = {
    kind,
    lr: o.ranged("lr", 5e-5, owhere, { min: 0, exclusiveMin: true }),
    weightDecay: o.ranged("weight_decay", 0, owhere, { min: 0 }),
    betas: [
      o.has("betas") ? rangedIndex(o, 0, owhere, ctx) : 0.9,
      o.has("betas") ? rangedIndex(o, 1, owhere, ctx) : 0.999,
    ],
    eps: o.ranged("eps", 1e-8, owhere, { min: 0, exclusiveMin: true }),
    momentum: o.ranged("momentum", 0, owhere, { min: 0, max: 1, exclusiveMax: true }),
    warmup: o.ranged("warmup", 0, owhere, { min: 0 }),
    schedule: (o.text("schedule") ?? "linear") as LrSchedule,
    minLr: o.ranged("min_lr", 0, owhere, { min: 0 }),
    clip: o.ranged("clip", 1, owhere, { min: 0 }),
  };
  const unused = kind === "sgd" ? ["betas", "eps"] : ["momentum"];
  for (const key of unused) {
    if (o.has(key)) {
      ctx.report("optimizerProperty", `${where}: \`${key}\` is not a setting of ${kind}`, o.spans[key]);
    }
  }
  if (spec.minLr > spec.lr) {
    ctx.report("outOfRange", `${owhere}: \`min_lr\` ${spec.minLr} is above \`lr\` ${spec.lr}`, o.spans["min_lr"]);
  }
  return spec;
}

function rangedIndex(o: BodyValues, index: number, where: string, ctx: PassContext): number {
  const value = o.number("betas", index) ?? 0.9;
  if (value >= 0 && value < 1) return value;
  ctx.report("outOfRange", `${where}: \`betas\` must each be >= 0 and < 1, not ${value}`, o.values("betas")[index]?.span);
  return index === 0 ? 0.9 : 0.999;
}

function checkAdapter(block: BlockAst, index: number, ctx: PassContext): AdapterSpec {
  const v = new BodyValues(block.body, ctx);
  const name = block.name?.text ?? `adapter${index}`;
  const where = `adapter "${name}"`;
  const rank = v.number("rank") ?? 8;
  if (rank < 1) ctx.report("rankBounds", `${where}: rank ${rank} is below 1`, v.spans["rank"]);
  const batch = v.ranged("batch", 8, where, { min: 1, max: 1 << 16 });
  const microBatch = v.ranged("micro_batch", 1, where, { min: 1 });
  if (batch / microBatch > 4096) {
    ctx.report("outOfRange", `${where}: ${batch / microBatch} micro-batches per step; at most 4096 (raise micro_batch)`, v.spans["micro_batch"] ?? v.spans["batch"]);
  }
  if (batch % microBatch !== 0) {
    ctx.report("microBatchDivides", `${where}: micro_batch ${microBatch} does not divide batch ${batch}`, v.spans["micro_batch"]);
  }
  let length: AdapterSpec["length"] = { epochs: 1 };
  if (v.has("epochs") && v.has("steps")) {
    ctx.report("conflictingProperties", `${where}: give \`epochs\` or \`steps\`, not both`, v.property("steps")?.keySpan);
  }
  if (v.bool("pack") && v.has("epochs")) {
    // A packed epoch's length is known only after tokenising; the plan's step count must not guess.
    ctx.report("conflictingProperties", `${where}: \`pack true\` counts training in \`steps\`, not \`epochs\``, v.property("epochs")?.keySpan);
  }
  if (v.has("steps")) length = { steps: v.ranged("steps", 1, where, { min: 1 }) };
  else if (v.has("epochs")) length = { epochs: v.ranged("epochs", 1, where, { min: 1 }) };

  const data = v.text("data");
  // Without data a job can still be planned, when its length is given in steps (LF3011 later).
  if (data === undefined && !v.has("steps")) ctx.report("missingProperty", `${where} needs \`data "FILE.jsonl"\` (or \`steps\`, to plan without data)`, block.kindSpan);
  const spec: AdapterSpec = {
    name,
    index,
    span: block.name?.span ?? block.kindSpan,
    spans: v.spans,
    rank: Math.max(1, rank),
    alpha: v.ranged("alpha", rank, where, { min: 0, exclusiveMin: true }),
    dropout: v.ranged("dropout", 0, where, { min: 0, max: 1, exclusiveMax: true }),
    rslora: v.bool("rslora") ?? false,
    // PEFT's default targets for Llama.
    targets: v.has("targets")
      ? v.values("targets").map((t) => ({ name: String("value" in t ? t.value : ""), span: t.span }))
      : [
          { name: "q_proj", span: block.kindSpan },
          { name: "v_proj", span: block.kindSpan },
        ],
    format: (v.text("format") ?? "alpaca") as DataFormat,
    evalSplit: v.ranged("eval_split", 0, where, { min: 0, max: 1, exclusiveMax: true }),
    evalEvery: v.ranged("eval_every", 0, where, { min: 0 }),
    skipBadLines: v.bool("skip_bad_lines") ?? false,
    seqLen: v.ranged("seq_len", 512, where, { min: 1 }),
    pack: v.bool("pack") ?? false,
    batch,
    microBatch,
    length,
    optimizer: checkOptimizer(block, v, ctx, where),
    out: v.has("out") ? path.resolve(ctx.baseDir, v.text("out")!) : path.join(ctx.planDir, "adapters", name),
    seed: v.ranged("seed", 0, where, { min: 0, max: 2 ** 32 - 1 }),
    saveEvery: v.ranged("save_every", 0, where, { min: 0 }),
  };
  if (data !== undefined) spec.data = path.resolve(ctx.baseDir, data);
  const init = v.text("init");
  if (init !== undefined) spec.init = path.resolve(ctx.baseDir, init);
  const fuse = v.text("fuse");
  if (fuse !== undefined) spec.fuse = fuse;
  return spec;
}

function checkCluster(block: BlockAst | undefined, ctx: PassContext): ClusterSpec {
  if (!block) {
    const device = findProfile("cpu")!;
    return { name: "cpu", span: ORIGIN, spans: {}, device, gpusPerNode: 1, nodes: 1, netBytesPerSecond: DEFAULT_NET_BYTES_PER_SECOND };
  }
  const v = new BodyValues(block.body, ctx);
  const where = blockLabel(block);
  const gpu = v.text("gpu") ?? "cpu";
  const profile = findProfile(gpu);
  if (!profile && !(v.has("memory") && v.has("tflops"))) {
    const known = ["A6000", "RTX3090", "A100-40G", "A100-80G", "H100", "H200", "cpu"];
    const hint = known.find((k) => k.toLowerCase().replace(/[^a-z0-9]/g, "") === gpu.toLowerCase().replace(/[^a-z0-9]/g, ""));
    ctx.report(
      "unknownDevice",
      `${where}: \`${gpu}\` is not a built-in profile (${known.join(" ")}); give \`memory\` and \`tflops\` for a new device` +
        (hint ? `, or did you mean \`${hint}\`?` : ""),
      v.spans["gpu"] ?? block.kindSpan,
    );
  }
  // An unknown device without figures has been reported; planning goes on with the cpu
  // profile's so that later checks do not add errors that only repeat this one.
  const base = profile ?? { ...findProfile("cpu")!, name: gpu };
  const linkKind = v.text("link") as ClusterSpec["device"]["link"]["kind"] | undefined;
  return {
    name: block.name?.text ?? gpu,
    span: block.kindSpan,
    spans: v.spans,
    device: {
      name: base.name,
      memoryBytes: v.ranged("memory", base.memoryBytes, where, { min: 0, exclusiveMin: true }),
      tflops: v.ranged("tflops", base.tflops, where, { min: 0, exclusiveMin: true }),
      bandwidthBytesPerSecond: v.ranged("bandwidth", base.bandwidthBytesPerSecond, where, { min: 0, exclusiveMin: true }),
      link: {
        kind: linkKind ?? base.link.kind,
        bytesPerSecond: v.has("link") ? (v.number("link", 1) ?? base.link.bytesPerSecond) : base.link.bytesPerSecond,
      },
    },
    gpusPerNode: v.ranged("gpus", 1, where, { min: 1, max: 1024 }),
    nodes: v.ranged("nodes", 1, where, { min: 1, max: 4096 }),
    netBytesPerSecond: v.ranged("net", DEFAULT_NET_BYTES_PER_SECOND, where, { min: 0, exclusiveMin: true }),
  };
}

function checkPlan(block: BlockAst | undefined, ctx: PassContext): PlanSpec {
  const v = block ? new BodyValues(block.body, ctx) : undefined;
  const spec: PlanSpec = {
    spans: v?.spans ?? {},
    schedule: (ctx.options.schedule ?? v?.text("schedule") ?? "auto") as ScheduleName,
    stages: ctx.options.stages ?? (v?.number("stages") !== undefined ? v.ranged("stages", 1, "plan", { min: 1, max: 4096 }) : "auto"),
    recompute: v?.bool("recompute") ?? false,
  };
  if (block) spec.span = block.kindSpan;
  return spec;
}

/** AST -> Job: block counts, names, defaults, ranges, and the checks that need no files. */
export const checkJob: Pass = {
  name: "check",
  needs: ["ast"],
  run(ir, ctx) {
    const blocks = ir.ast!.blocks;
    const of = (kind: BlockAst["kind"]) => blocks.filter((b) => b.kind === kind);
    const models = of("model");
    const adapters = of("adapter");
    const clusters = of("cluster");
    const plans = of("plan");

    if (models.length === 0) ctx.report("blockCount", "a job needs one `model { ... }` block", ORIGIN);
    if (adapters.length === 0) ctx.report("blockCount", "a job needs at least one `adapter NAME { ... }` block", ORIGIN);
    for (const [list, what] of [
      [models, "model"],
      [clusters, "cluster"],
      [plans, "plan"],
    ] as const) {
      for (const extra of list.slice(1)) {
        ctx.report("blockCount", `a job has at most one ${what} block; the first is at ${list[0]!.kindSpan.line}:${list[0]!.kindSpan.col}`, extra.kindSpan);
      }
    }

    const seen = new Map<string, BlockAst>();
    for (const a of adapters) {
      if (!a.name) continue;
      // Names become folder names (adapters/NAME) and metric labels.
      if (!/^[A-Za-z0-9_][A-Za-z0-9_.\- ]*$/.test(a.name.text) || a.name.text.length > 100) {
        ctx.report("badName", `adapter name ${JSON.stringify(a.name.text)}: use letters, digits, _ . - and spaces, not starting with . - or a space`, a.name.span);
      }
      const first = seen.get(a.name.text);
      if (first) {
        ctx.report("duplicateName", `adapter "${a.name.text}" is defined twice (first at ${first.name!.span.line}:${first.name!.span.col})`, a.name.span);
      } else seen.set(a.name.text, a);
    }

    const job = {
      model: models[0] ? checkModel(models[0], ctx) : undefined,
      adapters: adapters.map((a, i) => checkAdapter(a, i, ctx)),
      cluster: checkCluster(clusters[0], ctx),
      plan: checkPlan(plans[0], ctx),
    };

    const outs = new Map<string, string>();
    for (const a of job.adapters) {
      const other = outs.get(a.out);
      if (other !== undefined) {
        ctx.report("sharedOutput", `adapters "${other}" and "${a.name}" would both write to ${ctx.display(a.out)}`, a.spans["out"] ?? a.span);
      } else outs.set(a.out, a.name);
    }

    // `fuse` shapes an interleaved stream; a flushing schedule has none to shape.
    const schedule = job.plan.schedule;
    if (schedule !== "mlora" && schedule !== "auto") {
      for (const a of job.adapters) {
        if (a.fuse === undefined) continue;
        ctx.report("fuseIgnored", `adapter "${a.name}": \`fuse\` groups adapters in the mlora and auto schedules; under ${schedule} it has no effect`, a.spans["fuse"]);
      }
    }

    if (!job.model || job.adapters.length === 0) return ir;
    return { ...ir, job: { ...job, model: job.model } };
  },
};
