/**
 * Text from files loraflow did not write (job files, data, configs, someone else's plan) reaches
 * the terminal only through these: control characters and bidirectional overrides become visible
 * escapes, so a file cannot move the cursor, retitle the window or reorder what is shown; and a
 * file that is not what it claims to be is quoted by a short excerpt, never at length.
 */

// C0 controls but tab and newline, DEL, C1 controls, line/paragraph separators, bidi controls.
const UNSAFE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]/g;

/** `text` with every character a terminal would act on written as a visible escape. */
export function escapeControl(text: string): string {
  return text.replace(UNSAFE, (c) => {
    const code = c.charCodeAt(0);
    return code < 0x100 ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u${code.toString(16).padStart(4, "0")}`;
  });
}

/** At most `max` characters of `text`, newlines and controls escaped, "…" when cut. */
export function excerpt(text: string, max = 24): string {
  const cut = [...text.slice(0, max + 1)];
  const shown = cut.slice(0, max).join("").replace(/\n/g, "\\n").replace(/\t/g, "\\t");
  return escapeControl(shown) + (cut.length > max ? "…" : "");
}

/**
 * Why JSON.parse refused a text, without the text: V8 quotes the input in its message (`Unexpected
 * token 'r', "root:x:0:0"... is not valid JSON`), which would echo a file that is not JSON.
 */
export function jsonSyntaxReason(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const reason = message.replace(/,?\s*"[\s\S]*$/, "").replace(/ in JSON at position \d+.*$/s, "");
  return excerpt(reason || "malformed", 60);
}

/** A short description of any JSON value, safe to print: its type and a bounded excerpt. */
export function describeValue(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (typeof value === "object") return "an object";
  if (typeof value === "string") return `the string "${excerpt(value, 16)}"`;
  return excerpt(String(value), 24);
}
