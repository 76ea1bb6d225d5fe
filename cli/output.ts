import { escapeControl } from "../dsl/index.js";

/**
 * The only way the command writes to the terminal. Everything passes through escapeControl, so
 * names and lines quoted from job, data and plan files cannot drive the terminal. A closed pipe
 * (`loraflow run ... | head -1`) ends the printing, never the run: the rest of the output is
 * dropped and the work goes on to its end and its exit code.
 */
const closed = { stdout: false, stderr: false };

function guard(name: "stdout" | "stderr"): void {
  process[name].on("error", (e: NodeJS.ErrnoException) => {
    // EPIPE and its kin: nobody reads any more. Anything else is as fatal as it was.
    if (e.code === "EPIPE" || e.code === "ERR_STREAM_DESTROYED" || e.code === "ECONNRESET") closed[name] = true;
    else throw e;
  });
}

let installed = false;
export function guardOutput(): void {
  if (installed) return;
  installed = true;
  guard("stdout");
  guard("stderr");
}

function write(name: "stdout" | "stderr", text: string): void {
  if (closed[name]) return;
  try {
    process[name].write(escapeControl(text));
  } catch {
    closed[name] = true;
  }
}

/** To standard output. */
export const print = (text: string): void => write("stdout", text);
/** To standard error. */
export const printError = (text: string): void => write("stderr", text);

/**
 * To standard output, with terminal control sequences of loraflow's own (`controls`, written as
 * they are) between texts that are escaped as print escapes them: for the live progress lines.
 */
export function printLive(parts: { control?: string; text?: string }[]): void {
  if (closed.stdout) return;
  try {
    process.stdout.write(parts.map((p) => (p.control ?? "") + escapeControl(p.text ?? "")).join(""));
  } catch {
    closed.stdout = true;
  }
}
