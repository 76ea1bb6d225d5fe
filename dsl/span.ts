/** A range of source text. Offsets are UTF-16 indices; `end` is exclusive. Lines and columns are 1-based. */
export interface Span {
  start: number;
  end: number;
  line: number;
  col: number;
}

/** Where `offset` lies in `source`, as a 1-based line and column. */
export function positionAt(source: string, offset: number): { line: number; col: number } {
  let line = 1;
  let lineStart = 0;
  const stop = Math.min(Math.max(offset, 0), source.length);
  for (let i = 0; i < stop; i++) {
    if (source.charCodeAt(i) === 10) {
      line++;
      lineStart = i + 1;
    }
  }
  return { line, col: stop - lineStart + 1 };
}

export function spanOf(source: string, start: number, end: number): Span {
  const { line, col } = positionAt(source, start);
  return { start, end: Math.max(end, start), line, col };
}

/** The span from the start of `a` to the end of `b`. */
export function joinSpans(a: Span, b: Span): Span {
  return { start: a.start, end: Math.max(a.end, b.end), line: a.line, col: a.col };
}
