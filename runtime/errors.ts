/**
 * A problem with what the user gave `run` or `eval` (data, weights, plan, adapter folders),
 * as opposed to a bug: the CLI prints its message alone, without a stack.
 */
export class RunError extends Error {
  override name = "RunError";
}
