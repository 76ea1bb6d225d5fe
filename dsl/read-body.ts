import type { Atom, BodyAst, PropertyAst, Value } from "./ast.js";
import { diagnostic, type Diagnostic } from "./diagnostics.js";
import type { ArgKind, BodySpec, PropertySpec } from "./properties.js";
import { joinSpans, type Span } from "./span.js";
import { closest, didYouMean } from "./suggest.js";
import { parseQuantity } from "./units.js";

const ARG_NAMES: Record<ArgKind, string> = {
  int: "a whole number",
  number: "a number",
  bool: "true or false",
  word: "a word",
  text: "a string or a word",
  bytes: "a size such as 48GB",
  rate: "a bandwidth such as 25GB/s",
  intOrAuto: "a whole number or auto",
};

function describe(atom: Atom): string {
  switch (atom.kind) {
    case "word":
    case "number":
    case "quantity":
      return `\`${atom.text}\``;
    case "string":
      return `"${atom.text}"`;
    case "group":
      return "a { } block";
  }
}

type Converted = { ok: true; value: Value } | { ok: false; message: string; choice?: boolean };

function convert(atom: Atom, kind: ArgKind, key: string, choices?: readonly string[]): Converted {
  const fail = (detail = ""): Converted => ({ ok: false, message: `\`${key}\` takes ${ARG_NAMES[kind]}, not ${describe(atom)}${detail}` });
  const span = atom.span;
  switch (kind) {
    case "int":
    case "intOrAuto":
      if (kind === "intOrAuto" && atom.kind === "word" && atom.text === "auto") return { ok: true, value: { kind: "auto", span } };
      if (atom.kind !== "number") return fail();
      if (!Number.isSafeInteger(atom.value)) return fail();
      return { ok: true, value: { kind: "int", value: atom.value, span } };
    case "number":
      if (atom.kind !== "number" || !Number.isFinite(atom.value)) return fail();
      return { ok: true, value: { kind: "number", value: atom.value, span } };
    case "bool":
      if (atom.kind === "word" && (atom.text === "true" || atom.text === "false")) {
        return { ok: true, value: { kind: "bool", value: atom.text === "true", span } };
      }
      return fail();
    case "word":
      if (atom.kind !== "word") return fail();
      if (choices && !choices.includes(atom.text)) {
        return {
          ok: false,
          choice: true,
          message: `\`${key}\` takes one of ${choices.join(" | ")}, not \`${atom.text}\`${didYouMean(atom.text, choices)}`,
        };
      }
      return { ok: true, value: { kind: "word", value: atom.text, span } };
    case "text":
      if (atom.kind === "string" || atom.kind === "word") return { ok: true, value: { kind: "text", value: atom.text, span } };
      return fail();
    case "bytes":
    case "rate": {
      if (atom.kind === "number") return fail(`: give a unit (${kind === "bytes" ? "48GB, 24GiB" : "25GB/s, 100Gb/s"})`);
      if (atom.kind !== "quantity") return fail();
      const q = parseQuantity(atom.text);
      if (kind === "bytes" && q.perSecond) return fail(": that is a bandwidth; drop the /s");
      if (kind === "bytes" && q.bits) return fail(": that is in bits; sizes take B, KB, MB, GB, TB, KiB, MiB, GiB or TiB");
      if (kind === "rate" && !q.perSecond) return fail(`: a bandwidth ends in /s (${atom.text}/s)`);
      if (!Number.isFinite(q.value)) return fail();
      return { ok: true, value: { kind, value: q.value, span } };
    }
  }
}

/**
 * Reads a body's atoms as properties, using the catalog to know where each property's values
 * end. Reports unknown properties with "did you mean", values of the wrong kind, missing values,
 * extra values and duplicates, and always returns what it could read.
 */
export function readBody(items: readonly Atom[], spec: BodySpec, where: string, span: Span, file: string | undefined, out: Diagnostic[]): BodyAst {
  const properties: PropertyAst[] = [];
  const first = new Map<string, PropertyAst>();
  const keys = Object.keys(spec);
  const isKey = (atom: Atom | undefined): boolean => atom?.kind === "word" && Object.hasOwn(spec, atom.text);
  const report = (kind: Parameters<typeof diagnostic>[0], message: string, at: Span) => out.push(diagnostic(kind, message, at, file));

  let i = 0;
  // Skips the atoms that cannot start a property, reporting the first of them.
  const skipStray = (context: string) => {
    let reported = false;
    while (i < items.length && !isKey(items[i])) {
      const atom = items[i]!;
      if (!reported) {
        if (atom.kind === "word") {
          report("unknownProperty", `unknown property \`${atom.text}\` in ${where}${didYouMean(atom.text, keys)}`, atom.span);
        } else if (atom.kind === "group") {
          report("unexpectedBlock", `unexpected { } block ${context}`, atom.span);
        } else {
          report("badValue", `unexpected value ${describe(atom)} ${context}`, atom.span);
        }
        reported = true;
      }
      i++;
      // Later atoms are taken as the unknown property's values. A word is reported as a
      // property of its own when it looks like a misspelled one, or when it follows a value
      // that is not a word (`alpah 8 colour blue`: `colour` starts something new).
      const nextAtom = items[i];
      if (nextAtom?.kind === "word" && !isKey(nextAtom) && (closest(nextAtom.text, keys) !== undefined || atom.kind !== "word")) {
        reported = false;
      }
    }
  };

  skipStray(`in ${where}: a property name comes first`);
  while (i < items.length) {
    const keyAtom = items[i] as Extract<Atom, { kind: "word" }>;
    const key = keyAtom.text;
    const prop = spec[key] as PropertySpec;
    i++;
    const values: Value[] = [];
    let complete = true;
    let last: Span = keyAtom.span;

    if (prop.args === "words") {
      while (items[i]?.kind === "word" && !isKey(items[i])) {
        const atom = items[i] as Extract<Atom, { kind: "word" }>;
        values.push({ kind: "word", value: atom.text, span: atom.span });
        last = atom.span;
        i++;
      }
      if (values.length === 0) {
        report("missingValue", `\`${key}\` needs at least one word`, keyAtom.span);
        complete = false;
      }
    } else {
      for (const kind of prop.args) {
        const atom = items[i];
        const acceptedKeyword = atom?.kind === "word" && prop.choices?.includes(atom.text);
        if (atom === undefined || atom.kind === "group" || (isKey(atom) && !acceptedKeyword)) {
          report("missingValue", `\`${key}\` needs ${ARG_NAMES[kind]}`, keyAtom.span);
          complete = false;
          break;
        }
        const converted = convert(atom, kind, key, prop.choices);
        if (converted.ok) values.push(converted.value);
        else {
          report(converted.choice ? "unknownChoice" : "badValue", converted.message, atom.span);
          complete = false;
        }
        last = atom.span;
        i++;
      }
    }

    const property: PropertyAst = { key, keySpan: keyAtom.span, span: joinSpans(keyAtom.span, last), values };
    const next = items[i];
    if (next?.kind === "group") {
      if (prop.block) {
        property.block = readBody(next.items, prop.block, `${key} of ${where}`, next.span, file, out);
        property.span = joinSpans(keyAtom.span, next.span);
      } else {
        report("unexpectedBlock", `\`${key}\` takes no { } block`, next.span);
      }
      i++;
    }

    const earlier = first.get(key);
    if (earlier) {
      report("duplicateProperty", `\`${key}\` is given twice in ${where} (first at ${earlier.keySpan.line}:${earlier.keySpan.col})`, keyAtom.span);
    } else if (complete) {
      first.set(key, property);
      properties.push(property);
    }
    const arity = prop.args === "words" ? "" : `: \`${key}\` takes ${prop.args.length === 1 ? "one value" : `${prop.args.length} values`}`;
    skipStray(`after \`${key}\`${arity}`);
  }
  return { properties, span };
}
