import * as fs from "node:fs";

/** A text file's contents, or undefined after telling the user why it cannot be read. */
export function readTextOrReport(file: string): string | undefined {
  try {
    return fs.readFileSync(file, "utf8");
  } catch (e) {
    process.stderr.write(`loraflow: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}\n`);
    return undefined;
  }
}
