#!/usr/bin/env node
// The command is built from TypeScript by `npm ci` (the prepare script); this file only starts it.
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const entry = new URL("../dist/cli/main.js", import.meta.url);
if (!existsSync(fileURLToPath(entry))) {
  process.stderr.write("loraflow: not built yet; run `npm ci` (or `npm run build`) in the loraflow folder\n");
  process.exit(1);
}
const { main } = await import(entry.href);
main(process.argv);
