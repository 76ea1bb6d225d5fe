import { createToken, Lexer, type IToken, type TokenType } from "chevrotain";

const digits = "0123456789".split("");
const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_".split("");

export const WhiteSpace = createToken({ name: "WhiteSpace", pattern: /[ \t\r\n\f\v\u00a0\ufeff]+/, group: Lexer.SKIPPED, line_breaks: true });
export const Comment = createToken({
  name: "Comment",
  pattern: /(?:#|\/\/)[^\n\r]*/,
  group: Lexer.SKIPPED,
  start_chars_hint: ["#", "/"],
});
export const LCurly = createToken({ name: "LCurly", pattern: "{", label: "`{`" });
export const RCurly = createToken({ name: "RCurly", pattern: "}", label: "`}`" });

/** Strings, closed or not: an unclosed one is reported once by the lexing step and parsed as if closed. */
export const StringLiteral = createToken({ name: "StringLiteral", pattern: Lexer.NA, label: "a string" });
export const ClosedString = createToken({
  name: "ClosedString",
  pattern: /"(?:[^"\\\n\r]|\\.)*"/,
  categories: [StringLiteral],
  start_chars_hint: ['"'],
});
export const UnclosedString = createToken({
  name: "UnclosedString",
  pattern: /"(?:[^"\\\n\r]|\\.)*\\?/,
  categories: [StringLiteral],
  start_chars_hint: ['"'],
});

/**
 * A number with a size or bandwidth unit attached: 48GB, 1.5TiB, 768GB/s, 100Gb/s.
 * Tried before Number so that "48GB" is one token; the look-ahead keeps "1GBx" a word.
 */
export const Quantity = createToken({
  name: "Quantity",
  pattern: /(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?(?:KiB|MiB|GiB|TiB|KB|MB|GB|TB|Kb|Mb|Gb|Tb|B|b)(?:\/s)?(?![\w.\-])/,
  start_chars_hint: [...digits, "."],
  label: "a quantity",
});
/** A plain number. The look-ahead leaves "1f1b" to Word rather than splitting it into 1 and f1b. */
export const NumberLiteral = createToken({
  name: "NumberLiteral",
  pattern: /[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?(?![\w.\-])/,
  start_chars_hint: [...digits, ".", "+", "-"],
  label: "a number",
});
/** Names, keywords and bare values alike: the property catalog, not the lexer, gives words their roles. */
export const Word = createToken({
  name: "Word",
  pattern: /[A-Za-z_0-9][\w.\-]*/,
  start_chars_hint: [...letters, ...digits],
  label: "a word",
});

export const allTokens: TokenType[] = [
  WhiteSpace,
  Comment,
  LCurly,
  RCurly,
  StringLiteral,
  ClosedString,
  UnclosedString,
  Quantity,
  NumberLiteral,
  Word,
];

// Lines end at "\n" only (a "\r" before it is white space), as positionAt and the diagnostics
// printer count them, so every span's line and column agree with its offset.
export const jobLexer = new Lexer(allTokens, {
  positionTracking: "full",
  ensureOptimizations: true,
  lineTerminatorsPattern: /\n/g,
  lineTerminatorCharacters: ["\n"],
});

export type Token = IToken;
