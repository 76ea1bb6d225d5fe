export type { Atom, BlockAst, BlockKind, BodyAst, JobAst, Name, PropertyAst, Value } from "./ast.js";
export { findProperty } from "./ast.js";
export {
  Diagnostics,
  diagnostic,
  formatDiagnostic,
  formatDiagnostics,
  hasErrors,
  type Diagnostic,
  type DiagnosticKind,
  type DiagnosticName,
  type Severity,
} from "./diagnostics.js";
export { parseJob, type ParseResult } from "./parse.js";
export * from "./properties.js";
export { joinSpans, positionAt, spanOf, type Span } from "./span.js";
export { closest, didYouMean, editDistance } from "./suggest.js";
export { formatBytes, parseQuantity, type ParsedQuantity } from "./units.js";
export { describeValue, escapeControl, excerpt, jsonSyntaxReason } from "./text.js";
