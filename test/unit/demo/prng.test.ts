import { describe, expect, it } from 'vitest';
import { Rng, streamSeed } from '../../../src/demo/prng.ts';

describe('Rng', () => {
  it('is deterministic by seed and differs across seeds', () => {
    const a = Array.from({ length: 5 }, ((r) => () => r.next())(new Rng(42)));
    const b = Array.from({ length: 5 }, ((r) => () => r.next())(new Rng(42)));
    const c = Array.from({ length: 5 }, ((r) => () => r.next())(new Rng(43)));
    expect(a).toEqual(b);
    expect(a).not.toEqual(c);
  });

  it('keeps int() inside its inclusive bounds and reaches both ends', () => {
    const r = new Rng(1);
    const seen = new Set<number>();
    for (let i = 0; i < 2000; i++) {
      const v = r.int(3, 6);
      expect(v).toBeGreaterThanOrEqual(3);
      expect(v).toBeLessThanOrEqual(6);
      seen.add(v);
    }
    expect([...seen].sort()).toEqual([3, 4, 5, 6]);
  });

  it('derives distinct streams for neighbouring indices and salts', () => {
    const seeds = new Set<number>();
    for (let i = 0; i < 1000; i++) for (let s = 0; s < 3; s++) seeds.add(streamSeed(7, i, s));
    expect(seeds.size).toBe(3000);
  });
});
