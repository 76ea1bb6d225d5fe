import { CstParser, type CstNode } from "chevrotain";
import {
  allTokens,
  LCurly,
  NumberLiteral,
  Quantity,
  RCurly,
  StringLiteral,
  Word,
} from "./tokens.js";

/**
 * The whole grammar of a job file. It is deliberately generic, HCL-like: a file is a list of
 * `kind name? { ... }` blocks and a body is a flat list of words, literals and nested `{ }` groups.
 * Which words are property names, and how many values each takes, is data (properties.ts):
 * that keeps values such as `schedule batch` unambiguous and lets misspelled properties get a
 * "did you mean" instead of a parse error. Tokens that cannot start a block at the top level are
 * parsed by an error production (`stray`) so that one stray brace does not hide later errors.
 */
export class JobParser extends CstParser {
  constructor() {
    super(allTokens, { recoveryEnabled: true, nodeLocationTracking: "full", maxLookahead: 3 });
    this.performSelfAnalysis();
  }

  public jobFile = this.RULE("jobFile", () => {
    this.MANY(() => {
      this.OR([{ ALT: () => this.SUBRULE(this.block) }, { ALT: () => this.SUBRULE(this.stray) }]);
    });
  });

  public block = this.RULE("block", () => {
    this.CONSUME(Word, { LABEL: "kind" });
    this.OPTION(() => {
      this.OR([
        { ALT: () => this.CONSUME2(Word, { LABEL: "name" }) },
        { ALT: () => this.CONSUME(StringLiteral, { LABEL: "name" }) },
      ]);
    });
    this.CONSUME(LCurly);
    this.SUBRULE(this.body);
    this.CONSUME(RCurly);
  });

  public body = this.RULE("body", () => {
    this.MANY(() => {
      this.OR([
        { ALT: () => this.CONSUME(Word) },
        { ALT: () => this.CONSUME(StringLiteral) },
        { ALT: () => this.CONSUME(NumberLiteral) },
        { ALT: () => this.CONSUME(Quantity) },
        { ALT: () => this.SUBRULE(this.group) },
      ]);
    });
  });

  public group = this.RULE("group", () => {
    this.CONSUME(LCurly);
    this.SUBRULE(this.body);
    this.CONSUME(RCurly);
  });

  public stray = this.RULE("stray", () => {
    this.OR([
      { ALT: () => this.CONSUME(RCurly) },
      { ALT: () => this.CONSUME(StringLiteral) },
      { ALT: () => this.CONSUME(NumberLiteral) },
      { ALT: () => this.CONSUME(Quantity) },
      { ALT: () => this.SUBRULE(this.group) },
    ]);
  });
}

/** One parser instance serves every parse: chevrotain parsers are reusable and costly to build. */
export const jobParser = new JobParser();

export type { CstNode };
