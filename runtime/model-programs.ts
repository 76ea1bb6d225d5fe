import { lowerPrograms, TARGET_MODULES, targetModules, type Programs, type TargetModuleName } from "../compiler/index.js";
import type { LlamaArch } from "../compiler/job.js";

/** What `modelGrad` is given: a model cut into stages, adapters, and packed micro-batches. */
export interface ModelGradSpec {
  config: LlamaArch;
  /** Where it runs: the CPU engine (default), or the CUDA backend on a GPU or the emulated one. */
  backend?: "cpu" | "cuda" | "cuda-emulated";
  /** The CUDA backend's storage dtype (default bf16); the CPU engine runs fp32 programs. */
  dtype?: "fp32" | "bf16";
  stages: [number, number][];
  adapters: { rank: number; dropout: number; sites: Record<string, unknown> }[];
  microBatches: { parts: { adapter: number; rows: number }[] }[];
  programs?: Programs;
}

/**
 * The programs `modelGrad` runs: each micro-batch its own, through every stage and back, one
 * at a time (one phase whose micro-batch i goes F and B on each stage before i + 1 starts).
 * fp32 layouts for the CPU engine (which scales them for the double precision of the gradient
 * checks); the CUDA backend runs them in the spec's dtype.
 */
export function modelGradPrograms(spec: ModelGradSpec): Programs {
  const stages = spec.stages.map((blocks, index) => ({ index, blocks, embedding: index === 0, head: index === spec.stages.length - 1 }));
  const modules = targetModules(spec.config);
  const adapters = spec.adapters.map((a) => {
    const names = new Set(Object.keys(a.sites).map((key) => key.split(".")[1] as TargetModuleName));
    return {
      rank: a.rank,
      seqLen: 1,
      dropout: a.dropout,
      modules: modules.filter((m) => names.has(m.name) && TARGET_MODULES.includes(m.name)),
      optimizer: { kind: "sgd" as const, momentum: 0 },
    };
  });
  const last = stages.length - 1;
  const microBatches = spec.microBatches.map((mb, id) => ({ id, parts: mb.parts.map((p) => ({ adapter: p.adapter, sequences: 1, rows: p.rows })) }));
  const actions = stages.map((_, s) =>
    microBatches.flatMap(({ id }) => [
      ...(s > 0 ? [`RECV act mb${id} from s${s - 1}`] : []),
      `F mb${id}`,
      ...(s < last ? [`SEND act mb${id} to s${s + 1}`, `RECV grad mb${id} from s${s + 1}`] : []),
      `B mb${id}`,
      ...(s > 0 ? [`SEND grad mb${id} to s${s - 1}`] : []),
    ]),
  );
  const dtype = spec.backend === undefined || spec.backend === "cpu" ? "fp32" : (spec.dtype ?? "bf16");
  return lowerPrograms({ arch: spec.config, dtype, recompute: false, stages, adapters, phases: [{ microBatches, actions }] });
}
