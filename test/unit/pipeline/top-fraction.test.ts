import { describe, expect, it } from 'vitest';
import { Rng } from '../../../src/demo/prng.ts';
import {
  MemoryTopFractionSketch,
  ScoreHistogram,
  TOP_FRACTION_BIN_WIDTH,
  binLowerEdge,
  binOf,
  exactTopThreshold,
  rankedScores,
  topCount,
} from '../../../src/pipeline/top-fraction.ts';
import { record } from '../../helpers/records-fixture.ts';

/** Roughly normal CLIP-like scores (sum of uniforms), clamped to [-1, 1]. */
function scores(rng: Rng, n: number, mean: number, spread: number): number[] {
  return Array.from({ length: n }, () => {
    const u = rng.next() + rng.next() + rng.next() + rng.next() - 2;
    return Math.max(-1, Math.min(1, mean + spread * u));
  });
}

describe('top fraction: exact threshold', () => {
  it('k = ceil(f·N) without floating-point overshoot, at least 1, at most N', () => {
    expect(topCount(0.3, 10)).toBe(3);
    expect(topCount(0.3, 11)).toBe(4);
    expect(topCount(0.1, 30)).toBe(3);
    expect(topCount(0.001, 10)).toBe(1);
    expect(topCount(1, 7)).toBe(7);
  });

  it('is the k-th highest score; ties at it all pass', () => {
    expect(exactTopThreshold([0.1, 0.5, 0.3, 0.2, 0.4], 0.4)).toBe(0.4);
    const tied = [0.5, 0.3, 0.3, 0.3, 0.1];
    const t = exactTopThreshold(tied, 0.4)!;
    expect(t).toBe(0.3);
    expect(tied.filter((v) => v >= t)).toHaveLength(4);
    expect(exactTopThreshold([0.2, -0.3], 1)).toBe(-0.3);
    expect(exactTopThreshold([], 0.3)).toBeNull();
  });

  it('ranks every scored text of rows that are neither failed nor trusted (web and synthetic)', () => {
    const kept = record(1, {status: 'kept', scores: [{ text: 'w', source: 'web', itm: 0.9, itc: 0.3, kept: true, clip: 0.31 }, { text: 's', source: 'synthetic', itm: 0.9, itc: 0.3, kept: false, clip: 0.2 }] as never });
    const filtered = record(2, {status: 'filtered', scores: [{ text: 'w', source: 'web', itm: 0.1, itc: 0.3, kept: false, clip: 0.1 }] as never });
    const failed = record(3, {status: 'failed', scores: [{ text: 'w', source: 'web', itm: 0.1, itc: 0.3, kept: false, clip: 0.9 }] as never });
    const trusted = record(4, {status: 'kept', trusted: true, scores: [{ text: 'w', source: 'trusted', itm: 0.1, itc: 0.3, kept: true, clip: 0.8 }] as never });
    const unscored = record(5, {status: 'filtered', scores: [{ text: 'w', source: 'web', itm: 0.1, itc: 0.3, kept: false }] as never });
    expect(rankedScores([kept, filtered, failed, trusted, unscored])).toEqual([0.31, 0.2, 0.1]);
  });
});

describe('top fraction: the histogram sketch', () => {
  it('bins cover [-1, 1] in 0.001 steps; out-of-range scores land in the end bins', () => {
    expect(TOP_FRACTION_BIN_WIDTH).toBe(0.001);
    expect(binOf(-1)).toBe(0);
    expect(binOf(1)).toBe(1999);
    expect(binOf(1.5)).toBe(1999);
    expect(binOf(-2)).toBe(0);
    expect(binLowerEdge(binOf(0.2875))).toBeCloseTo(0.287, 12);
  });

  it('merges exactly, in any order, to the histogram of all the scores', () => {
    const rng = new Rng(7);
    const parts = [scores(rng, 500, 0.3, 0.1), scores(rng, 700, 0.25, 0.15), scores(rng, 1, 0.9, 0), scores(rng, 300, -0.1, 0.2)];
    const all = ScoreHistogram.of(parts.flat());
    const forward = parts.reduce((h, p) => h.merge(ScoreHistogram.of(p)), new ScoreHistogram());
    const backward = [...parts].reverse().reduce((h, p) => h.merge(ScoreHistogram.of(p)), new ScoreHistogram());
    for (const h of [forward, backward]) {
      expect(h.total).toBe(all.total);
      expect(new Map([...h.counts].sort())).toEqual(new Map([...all.counts].sort()));
    }
  });

  it('its threshold is at most one bin below the exact one and keeps at most that bin more', () => {
    const rng = new Rng(2026);
    for (const [n, mean, spread] of [[10_000, 0.3, 0.08], [37, 0.2, 0.2], [5_000, -0.2, 0.4]] as const) {
      const xs = scores(rng, n, mean, spread);
      const h = ScoreHistogram.of(xs);
      for (const f of [0.01, 0.1, 0.3, 0.5, 0.9, 1]) {
        const exact = exactTopThreshold(xs, f)!;
        const approx = h.topThreshold(f)!;
        expect(approx).toBeLessThanOrEqual(exact);
        expect(exact - approx).toBeLessThan(TOP_FRACTION_BIN_WIDTH + 1e-12);
        const k = topCount(f, n);
        const keptApprox = xs.filter((v) => v >= approx).length;
        const bin = h.counts.get(binOf(exact)) ?? 0;
        expect(keptApprox).toBeGreaterThanOrEqual(k);
        expect(keptApprox).toBeLessThanOrEqual(k + bin);
      }
    }
    expect(new ScoreHistogram().topThreshold(0.3)).toBeNull();
  });

  it('the in-memory sketch counts a shard once (a retried shard adds nothing)', async () => {
    const s = new MemoryTopFractionSketch();
    await s.add('s1', [0.1, 0.2]);
    const again = await s.add('s1', [0.1, 0.2]);
    expect(again.total).toBe(2);
    expect((await s.add('s2', [0.3])).total).toBe(3);
    await s.reset();
    expect((await s.read()).total).toBe(0);
  });
});
