/** loraflow's compiler as a library: compile a job, read a plan back, and the types of both. */
export { compile, type CompileRequest, type CompileResult } from "./compile.js";
export { PASS_NAMES } from "./driver.js";
export { nodeHost, openRegularFile, readRegularFile, type CompileHost } from "./host.js";
// The safetensors header reader the compiler checks weights with; the runtime reads tensors through it.
export { readSafetensorsHeader, type HeaderReading, type TensorHeader } from "./models/safetensors-header.js";
export type { CompileOptions, Ir } from "./ir.js";
export type { Job, LlamaArch, ScheduleName } from "./job.js";
export { DEVICE_PROFILES, type DeviceProfile } from "./devices.js";
export { formatAction, parseAction, type Action } from "./plan/actions.js";
export { readPlan, planProblems, type PlanReading } from "./plan/read.js";
export { planPathProblem, type PlanLink } from "./plan/paths.js";
export { comparisonRows } from "./emit/comparison.js";
export { formatTime } from "./emit/format.js";
export { planModule } from "./emit/plan-ts.js";
// The tensors a plan's model has (names, shapes, LoRA sites): part of the plan contract, so the
// runtime reads them here rather than re-deriving them.
export { loraShapes, loraTensorProblems, MODULE_PARENT, peftKey, TARGET_MODULES, targetModules, weightShapes, type TargetModule, type TargetModuleName } from "./models/llama.js";
// The trace's layout, for the runtime's measured trace beside the compiler's predicted one.
export { scheduleTrace, type Trace, type TraceEvent } from "./emit/trace.js";
export type { Timeline, TimelineEvent, TransferEvent, WaitEvent } from "./simulate/simulate.js";
export { planMemory } from "./plan/memory.js";
export { formatPlanJson } from "./plan/format.js";
export { lowerPlanPrograms, programsMemory } from "./programs/memory.js";
export { lowerPrograms, type LowerInputs } from "./programs/lower.js";
export { formatPrograms, formatStagePrograms } from "./programs/print.js";
export type { Programs, ProgramOp, ProgramTensor, ShapeClass, StageProgram, StagePrograms } from "./programs/types.js";
export { PLAN_FORMAT, PlanSchema, SUMMARY_FORMAT, SummarySchema, type Plan, type PlanAdapter, type PlanStage, type Summary } from "./plan/schema.js";
export { verifySchedule } from "./plan/verify-schedule.js";
export { VERSION } from "./version.js";
export { Diagnostics, formatDiagnostic, formatDiagnostics, hasErrors, type Diagnostic } from "../dsl/index.js";
