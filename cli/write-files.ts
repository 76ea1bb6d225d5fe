import * as fs from "node:fs";
import * as path from "node:path";

/**
 * Writes every file or none: all contents go to temporary names in the target folder first,
 * then each is renamed over its final name (rename is atomic within a file system). A failure
 * before the renames leaves what the folder held untouched.
 */
export function writeFilesAtomically(dir: string, files: Record<string, string>): void {
  fs.mkdirSync(dir, { recursive: true });
  const staged: [string, string][] = [];
  try {
    for (const [name, content] of Object.entries(files)) {
      const final = path.join(dir, name);
      const temp = path.join(dir, `.${name}.${process.pid}.tmp`);
      fs.writeFileSync(temp, content);
      staged.push([temp, final]);
    }
  } catch (e) {
    for (const [temp] of staged) fs.rmSync(temp, { force: true });
    throw e;
  }
  for (const [temp, final] of staged) fs.renameSync(temp, final);
}
