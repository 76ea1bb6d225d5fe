import { diagnostic, jsonSyntaxReason, type Diagnostic } from "../../dsl/index.js";
import { shortfall } from "../cost/memory.js";
import { ropeScalingCheck, targetModules } from "../models/llama.js";
import { planProgramProblems } from "../programs/validate.js";
import { planMemory } from "./memory.js";
import { PLAN_FORMAT, PlanSchema, type Plan } from "./schema.js";
import { verifySchedule } from "./verify-schedule.js";

export type PlanReading = { plan: Plan; diagnostics: [] } | { plan?: undefined; diagnostics: Diagnostic[] };

/**
 * Text of a plan.json -> a validated plan: JSON, format version, schema, then the meaning a
 * schema cannot check (stage ranges, adapter references, the schedule's soundness, the programs'
 * memory safety: compiler/programs/validate.ts), and last
 * that every stage fits its device: a plan edited by hand gets no further than a compiled one.
 * `file` names the plan in the diagnostics.
 */
export function readPlan(text: string, file = "plan.json"): PlanReading {
  const fail = (kind: "planUnreadable" | "planSchema" | "planVersion", messages: string[]): PlanReading => ({
    diagnostics: messages.map((m) => diagnostic(kind, m, undefined, file)),
  });
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    return fail("planUnreadable", [`not valid JSON (${jsonSyntaxReason(e)})`]);
  }
  const format = (json as { format?: unknown } | null)?.format;
  if (format !== PLAN_FORMAT) {
    return fail("planVersion", [`format is ${JSON.stringify(format ?? null)}; this loraflow reads ${PLAN_FORMAT}`]);
  }
  const parsed = PlanSchema.safeParse(json);
  if (!parsed.success) {
    return fail(
      "planSchema",
      parsed.error.issues.slice(0, 10).map((i) => `${i.path.length ? i.path.join(".") : "(root)"}: ${i.message}`),
    );
  }
  const problems = planProblems(parsed.data);
  if (problems.length > 0) return fail("planSchema", problems.slice(0, 10));
  const overCapacity = memoryProblems(parsed.data);
  if (overCapacity.length > 0) return { diagnostics: overCapacity.map((m) => diagnostic("doesNotFit", m, undefined, file)) };
  return { plan: parsed.data, diagnostics: [] };
}

/** What a schema cannot say: ranges that tile the model, indices that point at real things. */
export function planProblems(plan: Plan): string[] {
  const problems: string[] = [];
  const blocks = 2 * plan.model.config.layers;
  let next = 0;
  const devices = plan.cluster.gpusPerNode * plan.cluster.nodes;
  plan.stages.forEach((s, i) => {
    if (s.index !== i) problems.push(`stages.${i}.index is ${s.index}`);
    if (s.blocks[0] !== next || s.blocks[1] <= s.blocks[0]) problems.push(`stages.${i}.blocks [${s.blocks.join(", ")}] does not continue from block ${next}`);
    if (s.layers[0] !== Math.floor(s.blocks[0] / 2) || s.layers[1] !== Math.ceil(s.blocks[1] / 2)) problems.push(`stages.${i}.layers disagrees with its blocks`);
    if (s.device >= devices) problems.push(`stages.${i}.device ${s.device} is beyond the cluster's ${devices} devices`);
    if (s.embedding !== (i === 0) || s.head !== (i === plan.stages.length - 1)) problems.push(`stages.${i}: the embedding belongs to the first stage, the head to the last`);
    next = s.blocks[1];
  });
  if (next !== blocks) problems.push(`the stages cover blocks [0, ${next}) of ${blocks}`);
  problems.push(...adapterProblems(plan));
  // What the engine reads of each micro-batch: every sequence of every step exactly once.
  const trained = new Array<number>(plan.adapters.length).fill(0);
  plan.schedule.phases.forEach((phase, p) => {
    const taken = new Map<string, number[]>(); // "adapter step" -> micro-batch indices
    for (const mb of phase.microBatches) {
      for (const part of mb.parts) {
        const adapter = plan.adapters[part.adapter];
        if (!adapter) continue;
        if (part.index >= adapter.microBatchesPerStep) problems.push(`schedule.phases.${p}: mb${mb.id} takes micro-batch ${part.index} of adapter ${part.adapter}, which has ${adapter.microBatchesPerStep}`);
        if (part.sequences !== adapter.microBatch) problems.push(`schedule.phases.${p}: mb${mb.id} takes ${part.sequences} sequences of adapter ${part.adapter}, whose micro_batch is ${adapter.microBatch}`);
        const k = `${part.adapter} ${part.step}`;
        taken.set(k, [...(taken.get(k) ?? []), part.index]);
      }
    }
    for (const a of phase.adapters) {
      const adapter = plan.adapters[a];
      if (!adapter) continue;
      trained[a]! += phase.rounds * phase.stepsPerRound;
      for (let step = 0; step < phase.stepsPerRound; step++) {
        const got = (taken.get(`${a} ${step}`) ?? []).sort((x, y) => x - y);
        if (got.length !== adapter.microBatchesPerStep || got.some((x, i) => x !== i)) {
          problems.push(`schedule.phases.${p}: step ${step} of adapter ${a} takes micro-batches [${got.slice(0, 8).join(", ")}] of its ${adapter.microBatchesPerStep}, not each once`);
        }
      }
    }
  });
  plan.adapters.forEach((a, i) => {
    if (trained[i] !== a.steps) problems.push(`adapters.${i}: the schedule trains ${trained[i]} steps of the ${a.steps} it declares`);
  });
  const groups = plan.schedule.groups;
  if (groups) {
    if (plan.schedule.name !== "mlora") problems.push(`schedule.groups: only an mlora schedule fuses adapters in groups`);
    const seen = groups.flat();
    if (seen.some((i) => i >= plan.adapters.length) || new Set(seen).size !== seen.length || seen.length !== plan.adapters.length) {
      problems.push(`schedule.groups must name each of the ${plan.adapters.length} adapters exactly once`);
    }
    // The groups describe the micro-batches: a micro-batch fuses adapters of one group only.
    const groupOf = new Map(groups.flatMap((g, k) => g.map((a) => [a, k] as const)));
    plan.schedule.phases.forEach((phase, p) => {
      const mixed = phase.microBatches.find((mb) => new Set(mb.parts.map((x) => groupOf.get(x.adapter))).size > 1);
      if (mixed) problems.push(`schedule.phases.${p}: mb${mixed.id} fuses adapters of different schedule.groups`);
    });
  }
  if (problems.length > 0) return problems;
  const unsound = verifySchedule(plan.stages.length, plan.adapters.length, plan.schedule.phases);
  return unsound.length > 0 ? unsound : planProgramProblems(plan);
}

/** An adapter's own numbers against each other and the model; out folders that collide. */
function adapterProblems(plan: Plan): string[] {
  const problems: string[] = [];
  const modules = new Map(targetModules(plan.model.config).map((m) => [m.name, m]));
  plan.adapters.forEach((a, i) => {
    const at = `adapters.${i}`;
    if (new Set(plan.adapters.map((b) => b.name)).size !== plan.adapters.length && plan.adapters.findIndex((b) => b.name === a.name) !== i) problems.push(`${at}: a second adapter named ${JSON.stringify(a.name)}`);
    if (a.microBatchesPerStep * a.microBatch !== a.batch) problems.push(`${at}: ${a.microBatchesPerStep} micro-batches of ${a.microBatch} are not its batch of ${a.batch}`);
    if (a.seqLen > plan.model.config.maxSeq) problems.push(`${at}: seqLen ${a.seqLen} is above the model's maxSeq ${plan.model.config.maxSeq}`);
    const bound = Math.min(...a.targets.map((t) => Math.min(modules.get(t)!.in, modules.get(t)!.out)));
    if (a.rank > bound) problems.push(`${at}: rank ${a.rank} exceeds min(in, out) = ${bound} of its targets`);
    if (new Set(a.targets).size !== a.targets.length) problems.push(`${at}: targets repeat a module`);
  });
  const scaling = plan.model.config.ropeScaling;
  if (scaling !== null) {
    const check = ropeScalingCheck(scaling);
    if (check.problem || check.unsupported || check.scaling === null) problems.push(`model.config.ropeScaling: ${check.problem ?? check.unsupported ?? "\"default\" is written as null"}`);
  }
  // An out folder is replaced whole: it must not be the plan's folder, another adapter's out, or
  // hold what the run reads (its own init excepted: read before training, replaced after).
  const within = (inner: string, outer: string) => outer === "." || inner === outer || inner.startsWith(outer + "/");
  const inputs = [
    ...(plan.model.folder === null ? [] : [{ path: plan.model.folder, what: "the model folder", owner: -1 }]),
    ...(plan.model.tokenizer === null ? [] : [{ path: plan.model.tokenizer, what: "the tokenizer folder", owner: -1 }]),
    ...plan.adapters.flatMap((a, i) => [
      ...(a.data.path === null ? [] : [{ path: a.data.path, what: `adapter ${i}'s data`, owner: -1 }]),
      ...(a.init === null ? [] : [{ path: a.init, what: `adapter ${i}'s init`, owner: i }]),
    ]),
  ];
  plan.adapters.forEach((a, i) => {
    const at = `adapters.${i}.out`;
    if (a.out === ".") problems.push(`${at} is the plan's own folder`);
    plan.adapters.forEach((b, j) => {
      if (j > i && (within(a.out, b.out) || within(b.out, a.out))) problems.push(`${at} and adapters.${j}.out are the same folder or one holds the other`);
    });
    for (const input of inputs) {
      if (input.owner === i && input.path === a.out) continue;
      if (within(input.path, a.out) || within(a.out, input.path)) problems.push(`${at} ${JSON.stringify(a.out)} holds or lies in ${input.what} (${JSON.stringify(input.path)})`);
    }
  });
  return problems;
}

/** Stages whose recomputed peak exceeds the device's memory. */
export function memoryProblems(plan: Plan): string[] {
  const capacity = plan.cluster.device.memoryBytes;
  return planMemory(plan).flatMap((m, s) => (m.totalBytes > capacity ? [shortfall(s, m, capacity, plan.cluster.device.name, plan.recompute)] : []));
}
