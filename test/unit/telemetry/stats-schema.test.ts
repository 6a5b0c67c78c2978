import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { HISTOGRAMS, bucketOf, keptAtThreshold } from '../../../src/telemetry/stats-schema.ts';
import { pickSamples } from '../../../src/telemetry/stats.ts';
import { demoRecord } from '../../helpers/dashboard-fixtures.ts';

describe('score histograms', () => {
  it('puts values in range, clamps the edges and puts a threshold on its own bucket edge', () => {
    expect(bucketOf(HISTOGRAMS.itm, 0)).toBe(0);
    expect(bucketOf(HISTOGRAMS.itm, 1)).toBe(49);
    expect(bucketOf(HISTOGRAMS.itm, 0.5)).toBe(25);
    expect(bucketOf(HISTOGRAMS.itm, 0.4999)).toBe(24);
    expect(bucketOf(HISTOGRAMS.itm, -3)).toBe(0);
    expect(bucketOf(HISTOGRAMS.itc, -1)).toBe(0);
    expect(bucketOf(HISTOGRAMS.itc, 0)).toBe(50);
    expect(bucketOf(HISTOGRAMS.itc, 0.999)).toBe(99);
  });

  it('recomputes "kept at ≥ t" exactly for thresholds on bucket edges', () => {
    // Edges below the top one: the last bucket also holds the clamped value 1.0.
    const edge = fc.integer({ min: 0, max: 49 }).map((i) => i / 50);
    fc.assert(fc.property(fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 200 }), edge, (values, t) => {
      const counts = new Array<number>(50).fill(0);
      for (const v of values) counts[bucketOf(HISTOGRAMS.itm, v)]++;
      const { kept, total } = keptAtThreshold(HISTOGRAMS.itm, counts, t);
      expect(total).toBe(values.length);
      expect(kept).toBe(values.filter((v) => v >= t).length);
    }));
  });
});

describe('pickSamples', () => {
  it('spreads picks over kept, filtered and failed rows, deterministically', () => {
    const rows = Array.from({ length: 200 }, (_, i) => demoRecord(11, i).record);
    const picked = pickSamples(rows, 6);
    expect(picked).toHaveLength(6);
    expect(new Set(picked.map((r) => r.status))).toEqual(new Set(['kept', 'filtered', 'failed']));
    expect(pickSamples(rows, 6).map((r) => r.key)).toEqual(picked.map((r) => r.key));
    expect(pickSamples(rows.slice(0, 2), 6)).toHaveLength(2);
    expect(pickSamples(rows, 0)).toEqual([]);
  });
});
