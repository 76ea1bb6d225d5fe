import { parseJob } from "../../dsl/index.js";
import type { Pass } from "../ir.js";

/** Source text -> AST, with syntax diagnostics. */
export const parse: Pass = {
  name: "parse",
  needs: [],
  run(ir, ctx) {
    const { ast, diagnostics } = parseJob(ir.source, ctx.file);
    ctx.diagnostics.push(...diagnostics);
    return { ...ir, ast };
  },
};
