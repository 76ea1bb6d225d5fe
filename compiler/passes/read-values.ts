import type { BodyAst, PropertyAst, Span, Value } from "../../dsl/index.js";
import type { PassContext } from "../ir.js";

/**
 * Typed access to a body's properties. The reader in dsl/ has already checked each value's
 * kind, so a property present here has the values its catalog entry asks for.
 */
export class BodyValues {
  readonly spans: Record<string, Span> = {};
  private readonly byKey = new Map<string, PropertyAst>();

  constructor(
    body: BodyAst,
    private readonly ctx: PassContext,
  ) {
    for (const p of body.properties) {
      this.byKey.set(p.key, p);
      this.spans[p.key] = p.values[0]?.span ?? p.keySpan;
    }
  }

  has(key: string): boolean {
    return this.byKey.has(key);
  }

  property(key: string): PropertyAst | undefined {
    return this.byKey.get(key);
  }

  values(key: string): Value[] {
    return this.byKey.get(key)?.values ?? [];
  }

  private value(key: string, index = 0): Value | undefined {
    return this.byKey.get(key)?.values[index];
  }

  number(key: string, index = 0): number | undefined {
    const v = this.value(key, index);
    return v && "value" in v && typeof v.value === "number" ? v.value : undefined;
  }

  text(key: string): string | undefined {
    const v = this.value(key);
    return v && "value" in v && typeof v.value === "string" ? v.value : undefined;
  }

  bool(key: string): boolean | undefined {
    const v = this.value(key);
    return v?.kind === "bool" ? v.value : undefined;
  }

  /**
   * A number checked against a range; reports and returns the fallback when outside it.
   * `min`/`max` are inclusive unless `exclusiveMin`/`exclusiveMax`.
   */
  ranged(
    key: string,
    fallback: number,
    where: string,
    range: { min?: number; max?: number; exclusiveMin?: boolean; exclusiveMax?: boolean },
  ): number {
    const v = this.number(key);
    if (v === undefined) return fallback;
    const { min, max, exclusiveMin, exclusiveMax } = range;
    const low = min === undefined ? true : exclusiveMin ? v > min : v >= min;
    const high = max === undefined ? true : exclusiveMax ? v < max : v <= max;
    if (low && high) return v;
    const lo = min === undefined ? "" : `${exclusiveMin ? ">" : ">="} ${min}`;
    const hi = max === undefined ? "" : `${exclusiveMax ? "<" : "<="} ${max}`;
    this.ctx.report("outOfRange", `${where}: \`${key}\` must be ${[lo, hi].filter(Boolean).join(" and ")}, not ${v}`, this.spans[key]);
    return fallback;
  }
}
