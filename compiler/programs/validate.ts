import type { Plan } from "../plan/schema.js";
import { tensorBytes } from "./allocate.js";
import { touched } from "./builder.js";
import { adapterLayout, TENSOR_DTYPE, weightLayout } from "./layout.js";
import { planLowerInputs } from "./memory.js";
import { longestExample, ROUND_SLOTS, roundIntervals, shapeClassOf } from "./lower.js";
import type { ProgramOp, StageProgram, StagePrograms } from "./types.js";

/** Operand counts of each op: fixed, or one `u` per part after the fixed ones. */
const ARITY: Record<ProgramOp["op"], { in: number; out: number; perPart?: "in" | "out" | "both"; scratch: [number, number] }> = {
  embed: { in: 0, out: 1, scratch: [0, 0] },
  copy: { in: 1, out: 1, scratch: [0, 0] },
  accumulate: { in: 2, out: 1, scratch: [0, 0] },
  zero: { in: 0, out: 1, scratch: [0, 0] },
  rmsnorm: { in: 1, out: 2, scratch: [0, 0] },
  rmsnorm_bwd: { in: 4, out: 1, scratch: [0, 0] },
  linear: { in: 1, out: 1, scratch: [0, 0] },
  linear_dx: { in: 2, out: 1, scratch: [0, 0] },
  lora_shrink: { in: 1, out: 0, perPart: "out", scratch: [0, 1] },
  lora_expand: { in: 1, out: 1, perPart: "in", scratch: [0, 0] },
  lora_bwd: { in: 2, out: 0, perPart: "in", scratch: [1, 3] },
  rope: { in: 1, out: 1, scratch: [0, 0] },
  rope_inv: { in: 1, out: 1, scratch: [0, 0] },
  attention: { in: 3, out: 2, scratch: [1, 1] },
  attention_bwd: { in: 9, out: 3, scratch: [3, 3] },
  swiglu: { in: 2, out: 1, scratch: [0, 0] },
  swiglu_bwd: { in: 5, out: 2, scratch: [0, 0] },
  add: { in: 2, out: 1, scratch: [0, 0] },
  head_loss: { in: 1, out: 1, scratch: [1, 2] },
};

const WEIGHTED = new Set<ProgramOp["op"]>(["embed", "rmsnorm", "rmsnorm_bwd", "linear", "linear_dx", "head_loss"]);
const LORA = new Set<ProgramOp["op"]>(["lora_shrink", "lora_expand", "lora_bwd"]);

function opProblems(op: ProgramOp, where: string, p: StageProgram, weights: number, parts: number): string[] {
  const problems: string[] = [];
  const a = ARITY[op.op];
  const n = op.parts?.length ?? 0;
  // lora_bwd may drop its dX (then in: dy, x, u...; else a trailing dx, also its one out).
  const ins = a.in + (a.perPart === "in" ? n : 0);
  const outs = a.out + (a.perPart === "out" ? n : 0);
  const arityOk = op.op === "lora_bwd" ? (op.in.length === ins && op.out.length === 0) || (op.in.length === ins + 1 && op.out.length === 1 && op.out[0] === op.in[ins]) : op.in.length === ins && op.out.length === outs;
  if (!arityOk) problems.push(`${where}: ${op.op} takes ${op.in.length} operands and makes ${op.out.length} results`);
  const scratch = op.scratch?.length ?? 0;
  if (scratch < a.scratch[0] || scratch > a.scratch[1]) problems.push(`${where}: ${op.op} has ${scratch} scratch tensors`);
  if (WEIGHTED.has(op.op) !== (op.weight !== undefined) || (op.weight !== undefined && op.weight >= weights)) problems.push(`${where}: ${op.op} names weight ${op.weight ?? "none"} of ${weights}`);
  if (LORA.has(op.op) !== (op.module !== undefined && op.parts !== undefined && op.layer !== undefined)) problems.push(`${where}: ${op.op} ${LORA.has(op.op) ? "lacks" : "has"} a LoRA module, layer and parts`);
  if (op.parts && (op.parts.some((k) => k >= parts) || new Set(op.parts).size !== op.parts.length)) problems.push(`${where}: parts [${op.parts.join(", ")}] are not distinct parts of the class's ${parts}`);
  for (const t of touched(op)) if (t >= p.tensors.length) problems.push(`${where}: tensor %${t} does not exist`);
  if (op.scratch?.some((t) => op.in.includes(t) || op.out.includes(t) || p.tensors[t]?.place !== "work")) problems.push(`${where}: scratch must be workspace tensors of its own`);
  return problems;
}

/** Where each place's tensors must end: its slot, buffer or workspace. */
function placeBound(p: StageProgram, place: string): number {
  return place === "stash" ? p.stashBytes : place === "work" ? p.workBytes : p.messageBytes;
}

/** Pairs of tensors live at once whose bytes overlap, in one op list's workspace. */
function workOverlaps(p: StageProgram, ops: readonly ProgramOp[], label: string): string[] {
  const first = new Map<number, number>();
  const last = new Map<number, number>();
  ops.forEach((op, i) => {
    for (const t of touched(op)) {
      if (p.tensors[t]?.place !== "work") continue;
      if (!first.has(t)) first.set(t, i);
      last.set(t, i);
    }
  });
  const order = [...first.keys()].sort((x, y) => first.get(x)! - first.get(y)!);
  const active: number[] = [];
  for (const t of order) {
    const start = first.get(t)!;
    for (let j = active.length - 1; j >= 0; j--) if (last.get(active[j]!)! < start) active.splice(j, 1);
    const a = p.tensors[t]!;
    const aEnd = a.offset + tensorBytes(a);
    for (const u of active) {
      const b = p.tensors[u]!;
      if (a.offset < b.offset + tensorBytes(b) && b.offset < aEnd) return [`${label}: %${t} (${a.name}) and %${u} (${b.name}) are live at once and overlap in the workspace`];
    }
    active.push(t);
  }
  return [];
}

/** Every read of an op list follows a write: in the forward, or (for the backward) by the forward into the stash. */
function readBeforeWrite(p: StageProgram, label: string): string[] {
  const problems: string[] = [];
  const writtenByForward = new Set<number>();
  for (const [name, ops] of [["forward", p.forward], ["backward", p.backward]] as const) {
    const written = new Set<number>();
    const readable = (t: number) => written.has(t) || (name === "backward" && p.tensors[t]?.place === "stash" && writtenByForward.has(t));
    const incoming = name === "forward" ? "act_in" : "grad_in";
    const outgoing = name === "forward" ? "act_out" : "grad_out";
    ops.forEach((op, i) => {
      for (const t of op.in) {
        const place = p.tensors[t]?.place;
        if (place === incoming) continue;
        if (!readable(t)) problems.push(`${label} ${name} op ${i} (${op.op}): reads %${t} before anything writes it`);
      }
      for (const t of touched(op)) {
        const place = p.tensors[t]?.place;
        if (place !== undefined && place !== "stash" && place !== "work" && place !== incoming && place !== outgoing) problems.push(`${label} ${name} op ${i} (${op.op}): %${t} is in ${place}, which the ${name} cannot reach`);
        if (place === incoming && op.out.includes(t)) problems.push(`${label} ${name} op ${i} (${op.op}): writes the ${incoming} buffer`);
      }
      for (const t of [...op.out, ...(op.scratch ?? [])]) written.add(t);
    });
    if (name === "forward") for (const t of written) writtenByForward.add(t);
    if (problems.length > 0) break;
  }
  return problems;
}

function programProblems(p: StageProgram, label: string, weights: number, parts: number): string[] {
  const problems: string[] = [];
  const messages = new Map<string, number>();
  p.tensors.forEach((t, i) => {
    const end = t.offset + tensorBytes(t);
    if (end > placeBound(p, t.place)) problems.push(`${label}: %${i} (${t.name}) at ${t.place}+${t.offset} ends at ${end}, past its ${placeBound(p, t.place)} bytes`);
    if (t.place !== "stash" && t.place !== "work") {
      messages.set(t.place, (messages.get(t.place) ?? 0) + 1);
      if (t.offset !== 0) problems.push(`${label}: %${i} (${t.name}) must start its ${t.place} buffer`);
    }
  });
  for (const [place, n] of messages) if (n > 1) problems.push(`${label}: ${n} tensors in the ${place} buffer`);
  for (const [name, ops] of [["forward", p.forward], ["backward", p.backward]] as const) {
    ops.forEach((op, i) => problems.push(...opProblems(op, `${label} ${name} op ${i}`, p, weights, parts)));
  }
  if (problems.length > 0) return problems;
  // The stash: every tensor in it is live from the forward to the backward, so none may overlap.
  const stash = p.tensors.map((t, i) => ({ t, i })).filter(({ t }) => t.place === "stash").sort((x, y) => x.t.offset - y.t.offset);
  let reach = 0;
  let previous = -1;
  for (const { t, i } of stash) {
    if (t.offset < reach) return [`${label}: stash tensors %${previous} and %${i} (${t.name}) overlap`];
    reach = Math.max(reach, t.offset + tensorBytes(t));
    previous = i;
  }
  return [...readBeforeWrite(p, label), ...workOverlaps(p, p.forward, `${label} forward`), ...workOverlaps(p, p.backward, `${label} backward`)];
}

/** A round's buffers against the liveness the stage's actions give them. */
function roundProblems(s: StagePrograms, programs: readonly StageProgram[], phase: Plan["schedule"]["phases"][number], p: number, classOf: readonly number[]): string[] {
  const round = s.rounds[p]!;
  const n = phase.microBatches.length;
  const label = `programs.stages.${s.stage}.rounds.${p}`;
  if (round.offsets.length !== 5 * n) return [`${label}: ${round.offsets.length} offsets for ${n} micro-batches`];
  if (round.bytes > s.roundBytes) return [`${label}: ${round.bytes} bytes, past the round region's ${s.roundBytes}`];
  const { stashes, messages } = roundIntervals(phase, s.stage, (mb) => programs[classOf[mb]!]!);
  // In start order; a stash before the message that starts with it.
  const live = [...stashes, ...messages].sort((x, y) => x.start - y.start || (x.slot % 5) - (y.slot % 5));
  const problems: string[] = [];
  const intervals: { start: number; end: number; offset: number; bytes: number; what: string }[] = [];
  for (const x of live) {
    const mb = Math.floor(x.slot / 5);
    const what = ROUND_SLOTS[x.slot % 5]!;
    const offset = round.offsets[x.slot]!;
    if (offset < 0) problems.push(`${label}: mb${mb} has no ${what}`);
    else if (offset + x.bytes > round.bytes) problems.push(`${label}: mb${mb}'s ${what} at ${offset} ends past the round's ${round.bytes} bytes`);
    else intervals.push({ start: x.start, end: x.end, offset, bytes: x.bytes, what: `mb${mb}'s ${what}` });
  }
  if (problems.length > 0) return problems;
  // Intervals were made in start order: sweep, keeping those still live.
  const active: typeof intervals = [];
  for (const x of intervals) {
    for (let j = active.length - 1; j >= 0; j--) if (active[j]!.end < x.start) active.splice(j, 1);
    const clash = active.find((y) => x.bytes > 0 && y.bytes > 0 && x.offset < y.offset + y.bytes && y.offset < x.offset + x.bytes);
    if (clash) return [`${label}: ${x.what} and ${clash.what} are live at once and overlap`];
    active.push(x);
  }
  return [];
}

/**
 * What readPlan checks of a plan's programs, so that the engine may follow them blindly: the
 * classes are the micro-batches' shapes, the arenas are laid out as the engine loads weights
 * and adapters, every tensor lies inside its place, every read follows a write, and no two
 * tensors (or round buffers) that are live at the same time share a byte. Called after the
 * schedule has been verified.
 */
export function planProgramProblems(plan: Plan): string[] {
  const programs = plan.programs;
  const inputs = planLowerInputs(plan);
  const problems: string[] = [];
  if (programs.dtype !== TENSOR_DTYPE[plan.model.dtype]) problems.push(`programs.dtype ${programs.dtype} is not the model's ${plan.model.dtype}`);
  if (programs.stages.length !== plan.stages.length) return [...problems, `programs.stages has ${programs.stages.length} stages, the plan ${plan.stages.length}`];
  if (programs.classOf.length !== plan.schedule.phases.length) return [...problems, `programs.classOf has ${programs.classOf.length} phases, the schedule ${plan.schedule.phases.length}`];
  const key = (c: unknown) => JSON.stringify(c);
  const longest = longestExample(inputs);
  plan.schedule.phases.forEach((phase, p) => {
    const ofId = programs.classOf[p]!;
    if (ofId.length !== phase.microBatches.length) problems.push(`programs.classOf.${p} has ${ofId.length} entries for ${phase.microBatches.length} micro-batches`);
    for (const mb of phase.microBatches) {
      const k = ofId[mb.id];
      if (k === undefined || k >= programs.classes.length || key(programs.classes[k]) !== key(shapeClassOf(mb, inputs.adapters, longest))) problems.push(`programs.classOf.${p}: mb${mb.id}'s class is not its shape`);
    }
  });
  if (problems.length > 0) return problems.slice(0, 10);
  const checked = new Set<string>();
  for (const [i, s] of programs.stages.entries()) {
    const stage = plan.stages[i]!;
    const label = `programs.stages.${i}`;
    if (s.stage !== i) problems.push(`${label}.stage is ${s.stage}`);
    if (s.blocks[0] !== stage.blocks[0] || s.blocks[1] !== stage.blocks[1]) problems.push(`${label}.blocks is not the stage's`);
    const weights = weightLayout(plan.model.config, stage, programs.dtype);
    if (key(weights.slots) !== key(s.weights) || weights.bytes !== s.weightBytes) problems.push(`${label}.weights is not the stage's weights arena`);
    if (adapterLayout(plan.model.config, stage, inputs.adapters).bytes !== s.adapterBytes) problems.push(`${label}.adapterBytes is not the stage's adapter arena`);
    const set = programs.sets[s.set];
    if (!set || set.length !== programs.classes.length || set.some((p, k) => p.class !== k)) problems.push(`${label}.set must name a set of one program per class, in class order`);
    if (s.activationBytes !== s.roundBytes + s.workBytes) problems.push(`${label}: activationBytes is not roundBytes + workBytes`);
    if (s.rounds.length !== plan.schedule.phases.length) problems.push(`${label}.rounds has ${s.rounds.length} phases`);
    if (problems.length > 0) return problems.slice(0, 10);
    for (const [k, p] of set!.entries()) {
      if (p.workBytes > s.workBytes) problems.push(`${label}: program ${k}'s workspace of ${p.workBytes} bytes exceeds the stage's ${s.workBytes}`);
      // A set is checked once for each weight table it is used with.
      const seen = `${s.set} ${k} ${s.weights.length}`;
      if (!checked.has(seen)) problems.push(...programProblems(p, `programs.sets.${s.set}.${k}`, s.weights.length, programs.classes[k]!.parts.length));
      checked.add(seen);
      if (problems.length > 0) return problems.slice(0, 10);
    }
    plan.schedule.phases.forEach((phase, p) => problems.push(...roundProblems(s, set!, phase, p, programs.classOf[p]!)));
    if (problems.length > 0) return problems.slice(0, 10);
  }
  return problems;
}
