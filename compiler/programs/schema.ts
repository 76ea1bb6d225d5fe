import { z } from "zod";
import { PROGRAM_OPS, TENSOR_PLACES } from "./types.js";

/** Byte offsets and sizes: an arena of up to 2^52 bytes, far past any device. */
const bytes = z.number().int().nonnegative().max(2 ** 52);
const index = z.number().int().nonnegative().max(2 ** 31);
const dim = z.number().int().positive().max(2 ** 31);
const dtype = z.enum(["f32", "bf16", "fp16"]);

export const ProgramOpSchema = z.object({
  op: z.enum(PROGRAM_OPS),
  in: z.array(index).max(4096),
  out: z.array(index).max(4096),
  scratch: z.array(index).max(16).optional(),
  weight: index.optional(),
  module: z.number().int().min(0).max(6).optional(),
  layer: index.optional(),
  parts: z.array(index).min(1).max(4096).optional(),
  chunk: dim.optional(),
});

export const ProgramTensorSchema = z.object({
  name: z.string().max(200),
  place: z.enum(TENSOR_PLACES),
  offset: bytes,
  shape: z.array(dim).min(1).max(4),
  dtype,
});

export const ShapeClassSchema = z.object({
  rows: dim,
  parts: z
    .array(
      z.object({
        rows: dim,
        rank: dim,
        modules: z.array(z.number().int().min(0).max(6)).max(7),
        dropout: z.boolean(),
      }),
    )
    .min(1),
  attentionRows: dim.describe("the most rows a packed attention block may hold: the scores scratch is its square"),
});

export const StageProgramSchema = z.object({
  class: index,
  tensors: z.array(ProgramTensorSchema),
  forward: z.array(ProgramOpSchema),
  backward: z.array(ProgramOpSchema),
  stashBytes: bytes,
  messageBytes: bytes,
  workBytes: bytes,
});

export const StageProgramsSchema = z.object({
  stage: index,
  blocks: z.tuple([index, index]),
  weights: z.array(z.object({ name: z.string(), offset: bytes, shape: z.array(dim).min(1).max(2), dtype })),
  weightBytes: bytes,
  adapterBytes: bytes,
  set: index.describe("the stage's programs: an index into programs.sets"),
  rounds: z.array(z.object({ offsets: z.array(z.number().int().min(-1).max(2 ** 52)), bytes })).describe("per phase: five byte offsets per micro-batch id (stash, act_in, act_out, grad_in, grad_out; -1: none)"),
  roundBytes: bytes,
  workBytes: bytes,
  activationBytes: bytes.describe("the activation arena: the round region, then the workspace"),
  inFlight: index,
});

export const ProgramsSchema = z.object({
  dtype,
  classes: z.array(ShapeClassSchema),
  classOf: z.array(z.array(index)).describe("per phase, per micro-batch id: its shape class"),
  sets: z.array(z.array(StageProgramSchema)).describe("program sets, one program per class each; stages of the same shape share one"),
  stages: z.array(StageProgramsSchema),
});
