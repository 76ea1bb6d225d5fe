import { diagnostic, jsonSyntaxReason, type Diagnostic } from "../../dsl/index.js";
import { shortfall } from "../cost/memory.js";
import { planMemory } from "./memory.js";
import { PLAN_FORMAT, PlanSchema, type Plan } from "./schema.js";
import { verifySchedule } from "./verify-schedule.js";

export type PlanReading = { plan: Plan; diagnostics: [] } | { plan?: undefined; diagnostics: Diagnostic[] };

/**
 * Text of a plan.json -> a validated plan: JSON, format version, schema, then the meaning a
 * schema cannot check (stage ranges, adapter references, the schedule's soundness), and last
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
  plan.schedule.phases.forEach((phase, p) => {
    for (const mb of phase.microBatches) {
      for (const part of mb.parts) {
        const adapter = plan.adapters[part.adapter];
        if (adapter && part.index >= adapter.microBatchesPerStep) problems.push(`schedule.phases.${p}: mb${mb.id} takes micro-batch ${part.index} of adapter ${part.adapter}, which has ${adapter.microBatchesPerStep}`);
      }
    }
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
  return problems.length > 0 ? problems : verifySchedule(plan.stages.length, plan.adapters.length, plan.schedule.phases);
}

/** Stages whose recomputed peak exceeds the device's memory. */
export function memoryProblems(plan: Plan): string[] {
  const capacity = plan.cluster.device.memoryBytes;
  return planMemory(plan).flatMap((m, s) => (m.totalBytes > capacity ? [shortfall(s, m, capacity, plan.cluster.device.name, plan.recompute)] : []));
}
