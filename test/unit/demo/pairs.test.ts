import { describe, expect, it } from 'vitest';
import { captionMatchesScene, captionSemantics } from '../../../src/demo/captions.ts';
import { DEFAULT_MIX, generateDemoPair, generateDemoPairs, NOISE_LABELS } from '../../../src/demo/pairs.ts';

describe('generateDemoPairs', () => {
  const pairs = generateDemoPairs({ n: 3000, seed: 5 });

  it('is deterministic by seed, and pair i does not depend on n or start', () => {
    expect(generateDemoPairs({ n: 50, seed: 5 })).toEqual(pairs.slice(0, 50));
    expect(generateDemoPairs({ n: 10, seed: 5, start: 100 })).toEqual(pairs.slice(100, 110));
    expect(generateDemoPairs({ n: 50, seed: 6 })).not.toEqual(pairs.slice(0, 50));
    expect(new Set(pairs.map((p) => p.key)).size).toBe(pairs.length);
  });

  it('follows the default mix (40% correct) within sampling error', () => {
    for (const label of NOISE_LABELS) {
      const share = pairs.filter((p) => p.label === label).length / pairs.length;
      expect(Math.abs(share - DEFAULT_MIX[label])).toBeLessThan(0.035);
    }
  });

  it('labels agree with the ground truth: only correct texts describe the image', () => {
    for (const p of pairs) {
      expect(captionMatchesScene(p.caption, p.scene)).toBe(true);
      const matches = captionMatchesScene(p.webText, p.scene);
      expect(matches).toBe(p.label === 'correct');
      if (p.label === 'mismatched' || p.label === 'swapped') expect(captionSemantics(p.webText)).not.toBeNull();
      if (p.label === 'junk') expect(captionSemantics(p.webText)).toBeNull();
    }
  });

  it('honours a custom mix, including zero weights', () => {
    const only = generateDemoPairs({ n: 200, seed: 1, mix: { correct: 0, mismatched: 0, swapped: 0, junk: 1 } });
    expect(only.every((p) => p.label === 'junk')).toBe(true);
    expect(() => generateDemoPair(1, 0, { correct: 0, mismatched: 0, swapped: 0, junk: 0 })).toThrow(RangeError);
  });

  it('produces every junk kind, including empty and very long texts', () => {
    const junk = pairs.filter((p) => p.label === 'junk').map((p) => p.webText);
    expect(junk.some((t) => t.trim() === '')).toBe(true);
    expect(junk.some((t) => /\.(jpe?g|png|webp)$/i.test(t))).toBe(true);
    expect(junk.some((t) => t.split(' ').length >= 20)).toBe(true);
  });
});
