import * as path from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
export const EXAMPLES = path.join(ROOT, "examples");
export const EXAMPLE_JOBS = ["tiny.lf", "llama2-7b-4xa6000.lf", "llama2-13b-4xa6000.lf", "llama2-70b-8xa100.lf", "llama3-8b-4xh100.lf", "llama3-8b-short-4xh100.lf"];
