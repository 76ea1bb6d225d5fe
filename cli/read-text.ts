import { readRegularFile } from "../compiler/index.js";
import { printError } from "./output.js";

/** A text file's contents, or undefined after telling the user why it cannot be read. */
export function readTextOrReport(file: string): string | undefined {
  try {
    return readRegularFile(file).toString("utf8");
  } catch (e) {
    printError(`loraflow: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}\n`);
    return undefined;
  }
}
