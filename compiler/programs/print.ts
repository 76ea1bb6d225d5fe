import { MODULE_PARENT, TARGET_MODULES } from "../models/llama.js";
import type { ProgramOp, ProgramTensor, Programs, ShapeClass, StagePrograms } from "./types.js";

/** Ops that add into their results (which they therefore also read); rope and rope_inv rotate in place. */
const ACCUMULATING = new Set<ProgramOp["op"]>(["accumulate", "linear_dx", "lora_expand", "lora_bwd", "rmsnorm_bwd", "attention_bwd", "swiglu_bwd"]);

const hex = (n: number) => `0x${n.toString(16)}`;

function where(t: ProgramTensor): string {
  return `${t.place}+${hex(t.offset)} [${t.shape.join(", ")}] ${t.dtype}`;
}

export function describeClass(cls: ShapeClass): string {
  const parts = cls.parts.map((p, k) => `part ${k}: ${p.rows} rows, rank ${p.rank}${p.dropout ? ", dropout" : ""}, ${p.modules.map((m) => TARGET_MODULES[m]).join(" ")}`);
  return `${cls.rows} rows (${parts.join("; ")})`;
}

/**
 * One op a line: its results, the op, its operands and the weight it reads, then where each
 * result lives. An op that accumulates into a tensor it also reads prints `+=`.
 */
export function formatOp(op: ProgramOp, tensors: readonly ProgramTensor[], weights: readonly { name: string }[], firstLayer = 0): string {
  const ref = (t: number) => `%${t}`;
  const accumulates = ACCUMULATING.has(op.op);
  const operands = op.in.filter((t) => !(accumulates && op.out.includes(t))).map(ref);
  const module = op.module !== undefined && op.layer !== undefined ? [`model.layers.${firstLayer + op.layer}.${MODULE_PARENT[TARGET_MODULES[op.module]!]}.${TARGET_MODULES[op.module]}`] : [];
  const args = [...operands, ...(op.weight !== undefined ? [weights[op.weight]?.name ?? `w${op.weight}`] : []), ...module];
  const extra = [
    ...(op.parts ? [`parts ${op.parts.join(" ")}`] : []),
    ...(op.chunk !== undefined ? [`chunk ${op.chunk}`] : []),
    ...(op.scratch && op.scratch.length > 0 ? [`scratch ${op.scratch.map(ref).join(" ")}`] : []),
  ];
  const lhs = op.out.length > 0 ? `${op.out.map(ref).join(", ")} ${accumulates ? "+=" : "="} ` : "";
  const notes = op.out.map((t) => where(tensors[t]!));
  const text = `${lhs}${op.op}${args.length > 0 ? " " + args.join(", ") : ""}${extra.length > 0 ? " [" + extra.join("; ") + "]" : ""}`;
  return notes.length > 0 ? `${text}  ; ${notes.join(", ")}` : text;
}

/** A stage's programs as text: its arenas, then each class's forward and backward. */
export function formatStagePrograms(s: StagePrograms, programs: Pick<Programs, "classes" | "sets">): string {
  const first = Math.floor(s.blocks[0] / 2);
  const lines = [
    `stage ${s.stage}: weights ${s.weightBytes} bytes, adapters ${s.adapterBytes} bytes, activations ${s.activationBytes} bytes ` +
      `(rounds ${s.roundBytes}, then work ${s.workBytes}; ${s.inFlight} micro-batch${s.inFlight === 1 ? "" : "es"} stashed at the peak)`,
  ];
  for (const p of programs.sets[s.set] ?? []) {
    lines.push(``, `stage ${s.stage} class ${p.class}: ${describeClass(programs.classes[p.class]!)}; stash ${p.stashBytes} bytes, work ${p.workBytes} bytes`);
    for (const [label, ops] of [["forward", p.forward], ["backward", p.backward]] as const) {
      lines.push(`  ${label}:`);
      for (const op of ops) lines.push(`    ${formatOp(op, p.tensors, s.weights, first)}`);
    }
  }
  return lines.join("\n");
}

export function formatPrograms(programs: Programs): string {
  return programs.stages.map((s) => formatStagePrograms(s, programs)).join("\n\n") + "\n";
}
