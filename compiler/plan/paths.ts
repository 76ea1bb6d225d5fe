/**
 * Paths in a plan are relative to the plan's folder and stay inside it: no absolute path, no
 * `..`, no empty or `.` segment, forward slashes only, no control characters, bounded length.
 * So a plan file from someone else cannot make loraflow read or write anywhere else. What lies
 * outside the folder (data, a model, an out folder the job names elsewhere) is reached through
 * the symbolic links the compile makes in the folder (`inputs/`, `outputs/`): a folder's links
 * are its owner's; a plan file's paths are not.
 */
export function planPathProblem(p: string): string | undefined {
  if (p.length === 0) return "is empty";
  if (p.length > 1024) return "is longer than 1024 characters";
  if (/[\u0000-\u001f\u007f\\]/.test(p)) return "holds a control character or a backslash";
  if (p.startsWith("/")) return "is absolute; paths in a plan are relative to its folder";
  if (p === ".") return undefined;
  for (const segment of p.split("/")) {
    if (segment === "..") return "climbs out of the plan's folder (`..`)";
    if (segment === "" || segment === ".") return "has an empty or `.` segment";
  }
  return undefined;
}

/** A link the compile makes in the plan's folder: `path` (relative to it) points at `target` (absolute). */
export interface PlanLink {
  path: string;
  target: string;
}
