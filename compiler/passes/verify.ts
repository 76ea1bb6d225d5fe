import type { Span } from "../../dsl/index.js";
import type { Pass } from "../ir.js";
import { verifySchedule } from "../plan/verify-schedule.js";

const ORIGIN: Span = { start: 0, end: 0, line: 1, col: 1 };

/** Refuses a plan the verifier finds broken. A failure here is the compiler's bug, not the user's. */
export const verify: Pass = {
  name: "verify",
  needs: ["schedule", "stages", "adapters"],
  run(ir, ctx) {
    const problems = verifySchedule(ir.stages!.length, ir.adapters!.length, ir.schedule!.phases);
    for (const problem of problems.slice(0, 10)) {
      ctx.report("planInvalid", `internal error, the ${ir.schedule!.name} schedule is broken: ${problem}`, ir.job?.plan.span ?? ORIGIN);
    }
    return problems.length > 0 ? { ...ir, schedule: undefined } : ir;
  },
};
