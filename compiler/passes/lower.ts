import type { Pass } from "../ir.js";
import { lowerLlama } from "../models/llama-graph.js";

/** The resolved architecture -> its dataflow graph with LoRA attachment points. */
export const lower: Pass = {
  name: "lower",
  needs: ["model"],
  run(ir) {
    return { ...ir, graph: lowerLlama(ir.model!.arch) };
  },
};
