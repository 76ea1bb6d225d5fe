import { parseActionList } from "../plan/actions.js";
import type { Dtype, LlamaArch } from "../job.js";
import { lowerLlama, type Graph } from "../models/llama-graph.js";
import { TARGET_MODULES } from "../models/llama.js";
import { alignUp, IntervalAllocator, placeTagged, placeTensors, tensorBytes } from "./allocate.js";
import type { ProgramDraft } from "./builder.js";
import { ATTENTION_BLOCK, lowerForward, type StageSpan } from "./forward.js";
import { adapterLayout, TENSOR_DTYPE, weightLayout, type LayoutAdapter } from "./layout.js";
import { recomputeBlocks } from "./recompute.js";
import { deriveBackward, eliminateDeadOps } from "./reverse.js";
import type { Programs, RoundLayout, ShapeClass, StageProgram, StagePrograms, TensorDtype } from "./types.js";

export interface LowerAdapter extends LayoutAdapter {
  seqLen: number;
  dropout: number;
}

export interface LowerPhase {
  /** A part's rows are its sequences of the adapter's seq_len, unless `rows` says otherwise (packed rows of any length). */
  microBatches: readonly { id: number; parts: readonly { adapter: number; sequences: number; rows?: number }[] }[];
  actions: readonly (readonly string[])[];
}

export interface LowerInputs {
  arch: LlamaArch;
  dtype: Dtype;
  recompute: boolean;
  stages: readonly (StageSpan & { index: number })[];
  adapters: readonly LowerAdapter[];
  phases: readonly LowerPhase[];
}

/**
 * A micro-batch's shape class: its rows and what each part's adapter runs on them. `longest`:
 * the longest example any micro-batch of the plan may hold (its longest seq_len).
 */
export function shapeClassOf(mb: LowerPhase["microBatches"][number], adapters: readonly LowerAdapter[], longest: number): ShapeClass {
  const parts = mb.parts.map((p) => {
    const a = adapters[p.adapter]!;
    return {
      rows: p.rows ?? p.sequences * a.seqLen,
      rank: a.rank,
      modules: a.modules.map((m) => TARGET_MODULES.indexOf(m.name)).sort((x, y) => x - y),
      dropout: a.dropout > 0,
    };
  });
  const rows = parts.reduce((s, p) => s + p.rows, 0);
  return { rows, parts, attentionRows: Math.min(rows, ATTENTION_BLOCK - 1 + longest) };
}

/** The longest example a plan's micro-batches may hold: its longest seq_len, or part. */
export function longestExample(inputs: Pick<LowerInputs, "adapters" | "phases">): number {
  let n = 1;
  for (const a of inputs.adapters) n = Math.max(n, a.seqLen);
  for (const phase of inputs.phases) for (const mb of phase.microBatches) for (const p of mb.parts) if (p.rows !== undefined) n = Math.max(n, p.rows);
  return n;
}

const classKey = (c: ShapeClass) => `${c.rows}|${c.attentionRows}|${c.parts.map((p) => `${p.rows}:${p.rank}:${p.modules.join(".")}:${p.dropout ? 1 : 0}`).join(",")}`;

const graphs = new WeakMap<LlamaArch, Graph>();
function graphOf(arch: LlamaArch): Graph {
  let g = graphs.get(arch);
  if (!g) {
    g = lowerLlama(arch);
    graphs.set(arch, g);
  }
  return g;
}

/** What a stage's programs depend on of the stage: how many blocks from which parity, and its ends. */
const shapeKey = (stage: StageSpan) => `${stage.blocks[1] - stage.blocks[0]}:${stage.blocks[0] % 2}:${stage.embedding ? 1 : 0}${stage.head ? 1 : 0}`;

// A stage's program depends on its shape and the class only, not on the schedule: `auto`
// weighs many schedules over the same stages, so each is lowered (or sized) once per model.
const lowered = new WeakMap<LlamaArch, Map<string, StageProgram>>();
const sized = new WeakMap<LlamaArch, Map<string, StageProgram>>();

/** `make()`, or what it gave before for the same model and key; returned as program `index`. */
function memoized(caches: WeakMap<LlamaArch, Map<string, StageProgram>>, arch: LlamaArch, key: string, index: number, make: () => StageProgram): StageProgram {
  let cache = caches.get(arch);
  if (!cache) caches.set(arch, (cache = new Map()));
  let hit = cache.get(key);
  if (!hit) {
    hit = make();
    if (cache.size > 4096) cache.clear();
    cache.set(key, hit);
  }
  return hit.class === index ? hit : { ...hit, class: index };
}

const programKey = (stage: StageSpan, cls: ShapeClass, dtype: TensorDtype, recompute: boolean) => `${shapeKey(stage)}|${dtype}|${recompute ? 1 : 0}|${classKey(cls)}`;

/** Each weight's index in a stage's weight table, by name. */
export const slotIndex = (slots: readonly { name: string }[]): Map<string, number> => new Map(slots.map((w, i) => [w.name, i]));

/** One stage's forward and backward over one shape class: lowered, differentiated, placed. Read-only. */
export function stageProgram(arch: LlamaArch, stage: StageSpan, cls: ShapeClass, index: number, dtype: TensorDtype, recompute: boolean, weightIndex: ReadonlyMap<string, number>): StageProgram {
  return memoized(lowered, arch, programKey(stage, cls, dtype, recompute), index, () => placeTensors(lowerDraft(arch, stage, cls, dtype, recompute, weightIndex), index));
}

function lowerDraft(arch: LlamaArch, stage: StageSpan, cls: ShapeClass, dtype: TensorDtype, recompute: boolean, weightIndex: ReadonlyMap<string, number>): ProgramDraft {
  const draft = lowerForward({ arch, graph: graphOf(arch), stage, cls, dtype, weightIndex });
  deriveBackward(draft, arch, cls);
  if (recompute) recomputeBlocks(draft);
  eliminateDeadOps(draft);
  return draft;
}

/**
 * A stage program's sizes without its ops, which is what weighing a schedule needs: measured on
 * a stage of the same shape three layers long. Every layer between a stage's first and last
 * stashes the same tensors and, its temporaries freed before the next layer starts, needs the
 * same workspace, so the long stage's stash is the short one's plus its middle layer's per extra
 * layer, and its workspace the short one's. Tests hold these sizes to the full programs'.
 */
export function stageProgramSizes(arch: LlamaArch, stage: StageSpan, cls: ShapeClass, index: number, dtype: TensorDtype, recompute: boolean, weightIndex: ReadonlyMap<string, number>): StageProgram {
  const blocks = stage.blocks[1] - stage.blocks[0];
  const short = 6 + (blocks % 2);
  // The embedding's stage starts the model and the head's ends it: a short stage with both would be another model.
  if (blocks <= short || (stage.embedding && stage.head)) return stageProgram(arch, stage, cls, index, dtype, recompute, weightIndex);
  return memoized(sized, arch, programKey(stage, cls, dtype, recompute), index, () => {
    const range: [number, number] = stage.head ? [stage.blocks[1] - short, stage.blocks[1]] : [stage.blocks[0], stage.blocks[0] + short];
    const span = { ...stage, blocks: range };
    const { program, tensorBlocks } = placeTagged(lowerDraft(arch, span, cls, dtype, recompute, slotIndex(weightLayout(arch, span, dtype).slots)), index);
    // The middle layer: the short stage's second whole one.
    const p0 = range[0] + (range[0] % 2 === 0 ? 2 : 3);
    let perLayer = 0;
    program.tensors.forEach((t, i) => {
      const b = tensorBlocks[i];
      if (t.place === "stash" && typeof b === "number" && b >= p0 && b < p0 + 2) perLayer += alignUp(tensorBytes(t));
    });
    const stashBytes = program.stashBytes + ((blocks - short) / 2) * perLayer;
    return { class: index, tensors: [], forward: [], backward: [], stashBytes, messageBytes: program.messageBytes, workBytes: program.workBytes };
  });
}

/** A micro-batch's five round buffers, in the order RoundLayout.offsets gives them. */
export const ROUND_SLOTS = ["stash", "act_in", "act_out", "grad_in", "grad_out"] as const;
const SLOT = { stash: 0, act_in: 1, act_out: 2, grad_in: 3, grad_out: 4 } as const;

/** A round buffer live from action `start` to action `end` (both included); `slot` indexes RoundLayout.offsets. */
export interface RoundInterval {
  slot: number;
  start: number;
  end: number;
  bytes: number;
}

/** First fit in start order: each buffer takes the lowest gap that holds it. */
function firstFit(intervals: readonly RoundInterval[]): { offsets: number[]; bytes: number } {
  const alloc = new IntervalAllocator();
  const offsets = intervals.map((x) => {
    alloc.advance(x.start);
    return alloc.place(x.bytes, x.end);
  });
  return { offsets, bytes: alloc.peak };
}

/** Equal slots of the largest stash: nothing fragments, at the price of the smaller stashes' slack. */
function equalSlots(intervals: readonly RoundInterval[]): { offsets: number[]; bytes: number; slots: number } {
  const slot = alignUp(Math.max(1, ...intervals.map((x) => x.bytes)));
  const busy: number[] = []; // slot -> last action it is live at
  const offsets = intervals.map((x) => {
    let k = busy.findIndex((until) => until < x.start);
    if (k < 0) k = busy.length;
    busy[k] = x.end;
    return k * slot;
  });
  return { offsets, bytes: busy.length * slot, slots: busy.length };
}

/**
 * Where each micro-batch's stash slot and message buffers sit during one round of a phase on a
 * stage, by liveness over the stage's action list: a stash from F to B, received activations
 * from RECV to F, sent ones from F to SEND, and the same for gradients around B. Stashes come
 * first, in equal slots or packed first-fit, whichever is smaller (slots of slightly different
 * sizes freed out of order fragment a packed layout); message buffers follow, packed.
 */
export function roundLayout(phase: LowerPhase, stage: number, programOf: (mb: number) => StageProgram): RoundLayout & { inFlight: number } {
  const { stashes, messages } = roundIntervals(phase, stage, programOf);
  const offsets = new Array<number>(5 * phase.microBatches.length).fill(-1);
  const packed = firstFit(stashes);
  const equal = equalSlots(stashes);
  const stash = equal.bytes <= packed.bytes ? equal : packed;
  const sent = firstFit(messages);
  stashes.forEach((x, i) => (offsets[x.slot] = stash.offsets[i]!));
  messages.forEach((x, i) => (offsets[x.slot] = stash.bytes + sent.offsets[i]!));
  // Micro-batches stashed at once, at the most: the equal slots' count is exactly that.
  return { offsets, bytes: stash.bytes + sent.bytes, inFlight: equal.slots };
}

/**
 * The buffers a stage's round needs and when each is live, in start order: a stash from F to
 * B, received activations from RECV to F, sent ones from F to SEND, and the same for gradients
 * around B (what roundLayout places and what readPlan checks a plan's placing against).
 */
export function roundIntervals(phase: LowerPhase, stage: number, programOf: (mb: number) => Pick<StageProgram, "stashBytes" | "messageBytes">): { stashes: RoundInterval[]; messages: RoundInterval[] } {
  const actions = parseActionList(phase.actions[stage] ?? []);
  const n = phase.microBatches.length;
  // Per micro-batch: where its F, B, SEND act and SEND grad are in the list (-1: absent).
  const f = new Int32Array(n).fill(-1);
  const b = new Int32Array(n).fill(-1);
  const sendAct = new Int32Array(n).fill(-1);
  const sendGrad = new Int32Array(n).fill(-1);
  actions.forEach((a, i) => {
    if (!a || a.op === "STEP" || a.mb < 0 || a.mb >= n) return;
    if (a.op === "F") f[a.mb] = i;
    else if (a.op === "B") b[a.mb] = i;
    else if (a.op === "SEND") (a.what === "act" ? sendAct : sendGrad)[a.mb] = i;
  });
  const until = (i: number) => (i < 0 ? actions.length : i);
  const stashes: RoundInterval[] = [];
  const messages: RoundInterval[] = [];
  actions.forEach((a, i) => {
    if (!a || a.op === "STEP" || a.mb < 0 || a.mb >= n) return;
    const p = programOf(a.mb);
    const mb = a.mb;
    if (a.op === "RECV") messages.push({ slot: 5 * mb + (a.what === "act" ? SLOT.act_in : SLOT.grad_in), start: i, end: until(a.what === "act" ? f[mb]! : b[mb]!), bytes: p.messageBytes });
    else if (a.op === "F") {
      stashes.push({ slot: 5 * mb + SLOT.stash, start: i, end: until(b[mb]!), bytes: p.stashBytes });
      if (sendAct[mb]! >= 0) messages.push({ slot: 5 * mb + SLOT.act_out, start: i, end: sendAct[mb]!, bytes: p.messageBytes });
    } else if (a.op === "B" && sendGrad[mb]! >= 0) messages.push({ slot: 5 * mb + SLOT.grad_out, start: i, end: sendGrad[mb]!, bytes: p.messageBytes });
  });
  return { stashes, messages };
}

/**
 * Every stage's programs and memory: the shape classes the schedule uses, one program pair per
 * stage and class, the weights and adapter arenas, and each phase's round layout. The
 * activation arena is the largest round's region followed by the largest program's workspace.
 * With `sizesOnly`, each program is its sizes alone (stageProgramSizes): for weighing schedules.
 */
export function lowerPrograms(inputs: LowerInputs, options: { sizesOnly?: boolean } = {}): Programs {
  const { arch, recompute, stages, adapters, phases } = inputs;
  const dtype = TENSOR_DTYPE[inputs.dtype];
  const classes: ShapeClass[] = [];
  const keys = new Map<string, number>();
  const longest = longestExample(inputs);
  const classOf = phases.map((phase) => {
    const ofId: number[] = [];
    for (const mb of phase.microBatches) {
      const cls = shapeClassOf(mb, adapters, longest);
      const key = classKey(cls);
      let k = keys.get(key);
      if (k === undefined) {
        k = classes.length;
        keys.set(key, k);
        classes.push(cls);
      }
      ofId[mb.id] = k;
    }
    return ofId;
  });
  const sets: StageProgram[][] = [];
  const setOf = new Map<string, number>();
  const out: StagePrograms[] = stages.map((stage) => {
    const weights = weightLayout(arch, stage, dtype);
    const state = adapterLayout(arch, stage, adapters);
    let set = setOf.get(shapeKey(stage));
    if (set === undefined) {
      const weightIndex = slotIndex(weights.slots);
      set = sets.length;
      setOf.set(shapeKey(stage), set);
      sets.push(classes.map((cls, k) => (options.sizesOnly ? stageProgramSizes : stageProgram)(arch, stage, cls, k, dtype, recompute, weightIndex)));
    }
    const programs = sets[set]!;
    let inFlight = 0;
    const rounds = phases.map((phase, p) => {
      const r = roundLayout(phase, stage.index, (mb) => programs[classOf[p]![mb]!]!);
      inFlight = Math.max(inFlight, r.inFlight);
      return { offsets: r.offsets, bytes: r.bytes };
    });
    const roundBytes = Math.max(0, ...rounds.map((r) => r.bytes));
    const workBytes = Math.max(0, ...programs.map((p) => p.workBytes));
    return {
      stage: stage.index,
      blocks: [stage.blocks[0], stage.blocks[1]],
      weights: weights.slots,
      weightBytes: weights.bytes,
      adapterBytes: state.bytes,
      set,
      rounds,
      roundBytes,
      workBytes,
      activationBytes: roundBytes + workBytes,
      inFlight,
    };
  });
  return { dtype, classes, classOf, sets, stages: out };
}
