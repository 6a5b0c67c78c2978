import { describe, expect, it } from 'vitest';
import { Rng, streamSeed } from '../../../src/demo/prng.ts';
import { generateScene } from '../../../src/demo/scene.ts';

const scenes = Array.from({ length: 1000 }, (_, i) => generateScene(new Rng(streamSeed(11, i))));

describe('generateScene', () => {
  it('draws one to three shapes, each inside the canvas and unlike the background', () => {
    const counts = new Set(scenes.map((s) => s.shapes.length));
    expect([...counts].sort()).toEqual([1, 2, 3]);
    for (const s of scenes) {
      for (const sh of s.shapes) {
        expect(sh.colour).not.toBe(s.background);
        expect(sh.cx - sh.size / 2).toBeGreaterThan(0);
        expect(sh.cx + sh.size / 2).toBeLessThan(1);
        expect(sh.cy - sh.size / 2).toBeGreaterThan(0);
        expect(sh.cy + sh.size / 2).toBeLessThan(1);
      }
    }
  });

  it('places two shapes so that the stated relation clearly holds', () => {
    for (const s of scenes.filter((x) => x.shapes.length === 2)) {
      const [a, b] = s.shapes as [NonNullable<(typeof s.shapes)[0]>, NonNullable<(typeof s.shapes)[0]>];
      const dx = b.cx - a.cx;
      const dy = b.cy - a.cy;
      const along = { above: dy, below: -dy, left: dx, right: -dx }[s.relation as 'above'];
      const across = s.relation === 'above' || s.relation === 'below' ? Math.abs(dx) : Math.abs(dy);
      expect(along).toBeGreaterThan(Math.max(a.size, b.size) * 0.75);
      expect(across).toBeLessThan(along * 0.5);
    }
  });

  it('lays three shapes out left to right without a relation', () => {
    for (const s of scenes.filter((x) => x.shapes.length === 3)) {
      expect(s.relation).toBeNull();
      const xs = s.shapes.map((sh) => sh.cx);
      expect(xs[0]! + 0.2).toBeLessThan(xs[1]!);
      expect(xs[1]! + 0.2).toBeLessThan(xs[2]!);
    }
  });
});
