import type { BlockAst, JobAst } from "./ast.js";
import { cstToRawJob, tokenSpan } from "./cst-to-atoms.js";
import { diagnostic, type Diagnostic } from "./diagnostics.js";
import { jobParser } from "./grammar.js";
import { BLOCK_KINDS, BLOCKS, isBlockKind } from "./properties.js";
import { readBody } from "./read-body.js";
import { spanOf } from "./span.js";
import { didYouMean } from "./suggest.js";
import { jobLexer } from "./tokens.js";

export interface ParseResult {
  ast: JobAst;
  diagnostics: Diagnostic[];
}

/** Chevrotain's messages name token types; these say what a person typed and what was expected. */
function describeToken(image: string | undefined): string {
  if (image === undefined || image === "") return "end of file";
  return `\`${image}\``;
}

/**
 * Source text -> AST, with every error found on the way. Never throws on any input: lexer
 * errors, parse errors (with chevrotain's recovery) and catalog errors all become diagnostics.
 */
export function parseJob(source: string, file?: string): ParseResult {
  const diagnostics: Diagnostic[] = [];
  const lexed = jobLexer.tokenize(source);
  for (const error of lexed.errors) {
    const char = source.slice(error.offset, error.offset + error.length);
    diagnostics.push(
      diagnostic("unexpectedCharacter", `unexpected character \`${char}\``, spanOf(source, error.offset, error.offset + error.length), file),
    );
  }
  for (const token of lexed.tokens) {
    if (token.tokenType.name === "UnclosedString") {
      diagnostics.push(diagnostic("unterminatedString", "string is missing its closing quote", tokenSpan(token), file));
    }
  }

  jobParser.input = lexed.tokens;
  const cst = jobParser.jobFile();
  for (const error of jobParser.errors) {
    const token = error.token;
    const atEnd = token.tokenType.name === "EOF" || !Number.isFinite(token.startOffset);
    const span = atEnd ? spanOf(source, source.length, source.length) : tokenSpan(token);
    const found = describeToken(atEnd ? undefined : token.image);
    const context = error.context.ruleStack.includes("block") ? " in this block" : "";
    let message: string;
    if (error.name === "MismatchedTokenException") {
      const expected = /-->\s*(.+?)\s*<--/.exec(error.message)?.[1] ?? "something else";
      message = `expected ${expected}${context}, found ${found}`;
    } else if (error.name === "NotAllInputParsedException") {
      message = `unexpected ${found}: expected a block such as \`adapter NAME { ... }\``;
    } else {
      message = `unexpected ${found}${context}`;
    }
    diagnostics.push(diagnostic("syntaxError", message, span, file));
  }

  const raw = cstToRawJob(cst);
  for (const stray of raw.strays) {
    diagnostics.push(diagnostic("syntaxError", `unexpected \`${stray.text}\` outside any block`, stray.span, file));
  }

  const blocks: BlockAst[] = [];
  for (const block of raw.blocks) {
    const kind = block.kind.text;
    if (!isBlockKind(kind)) {
      diagnostics.push(
        diagnostic("unknownBlock", `unknown block \`${kind}\`: expected ${BLOCK_KINDS.join(", ")}${didYouMean(kind, BLOCK_KINDS)}`, block.kind.span, file),
      );
      continue;
    }
    const label = block.name ? `${kind} "${block.name.text}"` : kind;
    if (kind === "adapter" && !block.name) {
      diagnostics.push(diagnostic("missingBlockName", "an adapter needs a name: `adapter NAME { ... }`", block.kind.span, file));
    }
    const body = readBody(block.items, BLOCKS[kind], label, block.span, file, diagnostics);
    const ast: BlockAst = { kind, kindSpan: block.kind.span, body, span: block.span };
    if (block.name) ast.name = { text: block.name.text, span: block.name.span };
    blocks.push(ast);
  }
  diagnostics.sort((a, b) => (a.span?.start ?? 0) - (b.span?.start ?? 0));
  return { ast: { blocks }, diagnostics };
}
