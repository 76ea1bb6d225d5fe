import { Diagnostics, type DiagnosticName } from "../dsl/index.js";

/**
 * A problem with what the user gave `run` or `eval` (data, weights, plan, adapter and output
 * folders), as opposed to a bug: the CLI prints its code and message alone, without a stack.
 */
export class RunError extends Error {
  override name = "RunError";
  readonly code: string;
  constructor(
    readonly kind: DiagnosticName,
    message: string,
  ) {
    super(message);
    this.code = Diagnostics[kind].code;
  }
}

/** A RunError for the first line of an errno failure, naming the file and the code (ENOENT ...). */
export function fileError(kind: DiagnosticName, file: string, what: string, e: unknown): RunError {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return new RunError(kind, `${file}: ${what} (${code ?? (e instanceof Error ? e.message : String(e))})`);
}
