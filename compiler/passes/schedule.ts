import type { Pass, Schedule } from "../ir.js";
import { flushSchedule } from "../schedules/pipeline.js";

/**
 * Orders every stage's work. `auto` picks 1F1B until the cost model and simulator can compare
 * schedules; `mlora` (interleaving without flushes) needs that simulator and is refused for now.
 */
export const schedule: Pass = {
  name: "schedule",
  needs: ["adapters", "stages", "job"],
  run(ir, ctx) {
    const plan = ir.job!.plan;
    const requested = plan.schedule;
    const p = ir.stages!.length;
    const adapters = ir.adapters!;
    let result: Schedule;
    switch (requested) {
      case "auto":
      case "1f1b":
        result = { name: "1f1b", phases: flushSchedule(adapters, p, "1f1b", false) };
        break;
      case "gpipe":
        result = { name: "gpipe", phases: flushSchedule(adapters, p, "gpipe", false) };
        break;
      case "batch":
        result = { name: "batch", phases: flushSchedule(adapters, p, "1f1b", true) };
        break;
      case "mlora":
        ctx.report(
          "unavailableSchedule",
          "schedule `mlora` is not available in this version; available: gpipe, 1f1b, batch, auto",
          plan.spans["schedule"] ?? plan.span,
        );
        return ir;
    }
    return { ...ir, schedule: result };
  },
};
