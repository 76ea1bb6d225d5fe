/**
 * plan.json's text: JSON indented two spaces a level, except that an array of numbers or
 * strings, and an object whose fields are all such values, stay on one line when they fit in
 * 160 characters. A plan holds long lists of small records (actions, program ops and tensors,
 * round offsets): one line each reads and diffs better, and the file is a fraction of the size.
 */
export function formatPlanJson(value: unknown): string {
  return format(value, "") + "\n";
}

const WIDTH = 160;

function flat(value: unknown): boolean {
  if (value === null || typeof value !== "object") return true;
  if (Array.isArray(value)) return value.every((v) => v === null || typeof v !== "object");
  return Object.values(value).every((v) => v === null || typeof v !== "object" || (Array.isArray(v) && v.every((x) => x === null || typeof x !== "object")));
}

function format(value: unknown, indent: string): string {
  if (value === null || typeof value !== "object") return JSON.stringify(value) ?? "null";
  if (Array.isArray(value) && value.every((v) => v === null || typeof v !== "object")) return JSON.stringify(value);
  if (flat(value)) {
    const fields = Object.entries(value).filter(([, v]) => v !== undefined);
    const line = fields.length === 0 ? "{}" : `{ ${fields.map(([k, v]) => `${JSON.stringify(k)}: ${JSON.stringify(v)}`).join(", ")} }`;
    if (line.length + indent.length <= WIDTH) return line;
  }
  const inner = indent + "  ";
  if (Array.isArray(value)) {
    if (value.length === 0) return "[]";
    return `[\n${value.map((v) => inner + format(v, inner)).join(",\n")}\n${indent}]`;
  }
  const entries = Object.entries(value).filter(([, v]) => v !== undefined);
  if (entries.length === 0) return "{}";
  return `{\n${entries.map(([k, v]) => `${inner}${JSON.stringify(k)}: ${format(v, inner)}`).join(",\n")}\n${indent}}`;
}
