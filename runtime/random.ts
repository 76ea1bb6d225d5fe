/**
 * Seeded randomness for initialisation and data order: xoshiro128** seeded through splitmix32.
 * The same (seed, ...parts) gives the same stream on every machine and Node version.
 */
function splitmix32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x9e3779b9) >>> 0;
    let z = a;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
}

export interface Random {
  /** Uniform in [0, 1). */
  next(): number;
  /** Uniform integer in [0, n). */
  int(n: number): number;
}

/** A generator for a purpose: the same (seed, ...parts) always gives the same stream. */
export function randomFor(seed: number, ...parts: number[]): Random {
  let mixed = splitmix32(seed)();
  for (const p of parts) mixed = splitmix32(mixed ^ (p >>> 0))();
  const init = splitmix32(mixed);
  let s0 = init(), s1 = init(), s2 = init(), s3 = init();
  if ((s0 | s1 | s2 | s3) === 0) s0 = 1;
  const next32 = () => {
    const result = Math.imul(((Math.imul(s1, 5) << 7) | (Math.imul(s1, 5) >>> 25)) >>> 0, 9) >>> 0;
    const t = (s1 << 9) >>> 0;
    s2 ^= s0;
    s3 ^= s1;
    s1 ^= s2;
    s0 ^= s3;
    s2 ^= t;
    s3 = ((s3 << 11) | (s3 >>> 21)) >>> 0;
    return result;
  };
  return {
    next: () => next32() / 4294967296,
    int: (n) => Math.floor((next32() / 4294967296) * n),
  };
}

/** The Fisher-Yates shuffle of 0..n-1. */
export function permutation(n: number, random: Random): Int32Array {
  const p = Int32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = random.int(i + 1);
    [p[i], p[j]] = [p[j]!, p[i]!];
  }
  return p;
}
