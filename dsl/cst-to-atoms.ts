import type { CstNode, IToken } from "chevrotain";
import type { Atom, Name } from "./ast.js";
import { jobParser } from "./grammar.js";
import type { Span } from "./span.js";

/** A block as the grammar sees it: a header and a body of atoms, not yet interpreted. */
export interface RawBlock {
  kind: Name;
  name?: Name & { quoted: boolean };
  items: Atom[];
  span: Span;
}

/** Top-level tokens that start no block, kept so they can be reported where they stand. */
export interface RawStray {
  text: string;
  span: Span;
}

export interface RawJob {
  blocks: RawBlock[];
  strays: RawStray[];
}

/** Tokens invented by chevrotain's error recovery have no position: they are dropped here. */
function isReal(token: IToken): boolean {
  return !token.isInsertedInRecovery && Number.isFinite(token.startOffset);
}

export function tokenSpan(token: IToken): Span {
  return {
    start: token.startOffset,
    end: (token.endOffset ?? token.startOffset) + 1,
    line: token.startLine ?? 1,
    col: token.startColumn ?? 1,
  };
}

function nodeSpan(node: CstNode, fallback: Span): Span {
  const loc = node.location;
  if (!loc || !Number.isFinite(loc.startOffset)) return fallback;
  const end = Number.isFinite(loc.endOffset) ? (loc.endOffset as number) + 1 : loc.startOffset + 1;
  return { start: loc.startOffset, end, line: loc.startLine ?? 1, col: loc.startColumn ?? 1 };
}

/** The text a string literal stands for: quotes removed, escapes (\" \\ \n \t) applied. */
export function decodeString(image: string): string {
  const closed = image.length >= 2 && image.endsWith('"') && !image.endsWith('\\"');
  const inner = image.slice(1, closed ? -1 : undefined);
  return inner.replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c === "t" ? "\t" : c));
}

function tokenAtom(token: IToken): Atom {
  const span = tokenSpan(token);
  switch (token.tokenType.name) {
    case "Word":
      return { kind: "word", text: token.image, span };
    case "NumberLiteral":
      return { kind: "number", value: Number(token.image), text: token.image, span };
    case "Quantity":
      return { kind: "quantity", text: token.image, span };
    default:
      return { kind: "string", text: decodeString(token.image), span };
  }
}

function tokensOf(node: CstNode, keys: string[]): IToken[] {
  const out: IToken[] = [];
  for (const key of keys) {
    for (const element of node.children[key] ?? []) {
      if ("image" in element && isReal(element)) out.push(element);
    }
  }
  return out;
}

function nodesOf(node: CstNode, key: string): CstNode[] {
  return (node.children[key] ?? []).filter((e): e is CstNode => "children" in e);
}

const BaseVisitor = jobParser.getBaseCstVisitorConstructorWithDefaults();

/**
 * CST -> raw blocks. Chevrotain groups a node's children by token type, so bodies are put
 * back into source order by offset here. Methods take whole nodes (for their locations) and
 * are called directly; the base class's check still fails loudly if a grammar rule has no method.
 */
class AtomVisitor extends BaseVisitor {
  constructor() {
    super();
    this.validateVisitor();
  }

  jobFile(node: CstNode): RawJob {
    const blocks = nodesOf(node, "block").map((b) => this.block(b));
    const strays = nodesOf(node, "stray").flatMap((s) => this.stray(s));
    return { blocks, strays };
  }

  block(node: CstNode): RawBlock {
    const kindToken = (node.children["kind"] as IToken[])[0]!;
    const kind = { text: kindToken.image, span: tokenSpan(kindToken) };
    const nameToken = tokensOf(node, ["name"])[0];
    const bodyNode = nodesOf(node, "body")[0];
    const raw: RawBlock = {
      kind,
      items: bodyNode ? this.body(bodyNode) : [],
      span: nodeSpan(node, kind.span),
    };
    if (nameToken) {
      const quoted = nameToken.tokenType.name !== "Word";
      raw.name = { text: quoted ? decodeString(nameToken.image) : nameToken.image, span: tokenSpan(nameToken), quoted };
    }
    return raw;
  }

  body(node: CstNode): Atom[] {
    const atoms: Atom[] = tokensOf(node, ["Word", "StringLiteral", "NumberLiteral", "Quantity"]).map(tokenAtom);
    for (const group of nodesOf(node, "group")) atoms.push(this.group(group));
    return atoms.sort((a, b) => a.span.start - b.span.start);
  }

  group(node: CstNode): Atom {
    const open = tokensOf(node, ["LCurly"])[0];
    const fallback = open ? tokenSpan(open) : { start: 0, end: 0, line: 1, col: 1 };
    const bodyNode = nodesOf(node, "body")[0];
    return { kind: "group", items: bodyNode ? this.body(bodyNode) : [], span: nodeSpan(node, fallback) };
  }

  stray(node: CstNode): RawStray[] {
    const tokens = tokensOf(node, ["RCurly", "StringLiteral", "NumberLiteral", "Quantity"]);
    const groups = nodesOf(node, "group").map((g) => this.group(g));
    return [
      ...tokens.map((t) => ({ text: t.image, span: tokenSpan(t) })),
      ...groups.map((g) => ({ text: "{", span: g.span })),
    ];
  }
}

const visitor = new AtomVisitor();

export function cstToRawJob(cst: CstNode): RawJob {
  return visitor.jobFile(cst);
}
