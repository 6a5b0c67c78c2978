import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  captionMatchesScene, captionSemantics, captionVariants, groundTruthCaption, normaliseCaption, paraphrases, swappedCaption,
} from '../../../src/demo/captions.ts';
import { Rng, streamSeed } from '../../../src/demo/prng.ts';
import { generateScene, type Scene } from '../../../src/demo/scene.ts';

const scene = (i: number): Scene => generateScene(new Rng(streamSeed(3, i)));

describe('caption grammar', () => {
  it('writes the expected sentence for a two-shape scene and accepts its inverse wording', () => {
    const s: Scene = {
      background: 'yellow',
      relation: 'above',
      shapes: [
        { kind: 'circle', colour: 'red', cx: 0.5, cy: 0.25, size: 0.2, rotation: 0 },
        { kind: 'square', colour: 'orange', cx: 0.5, cy: 0.75, size: 0.2, rotation: 0 },
      ],
    };
    expect(groundTruthCaption(s)).toBe('a red circle above an orange square on a yellow background');
    expect(captionMatchesScene('An orange square below a red circle, against a yellow background.', s)).toBe(true);
    expect(captionMatchesScene('a picture of a red circle above an orange square with a yellow background', s)).toBe(true);
    expect(captionMatchesScene('an orange square above a red circle on a yellow background', s)).toBe(false);
    expect(captionMatchesScene('a red circle above an orange square on a green background', s)).toBe(false);
  });

  it('treats the listing order of three shapes as meaningless', () => {
    const s: Scene = {
      background: 'black',
      relation: null,
      shapes: [
        { kind: 'star', colour: 'white', cx: 0.2, cy: 0.5, size: 0.2, rotation: 0 },
        { kind: 'diamond', colour: 'blue', cx: 0.5, cy: 0.5, size: 0.2, rotation: 0 },
        { kind: 'triangle', colour: 'orange', cx: 0.8, cy: 0.5, size: 0.2, rotation: 0 },
      ],
    };
    expect(groundTruthCaption(s)).toBe('a white star, a blue diamond and an orange triangle on a black background');
    expect(captionMatchesScene('an orange triangle, a white star and a blue diamond with a black background', s)).toBe(true);
    expect(captionMatchesScene('a white star, a blue diamond and a blue triangle on a black background', s)).toBe(false);
    expect(paraphrases(s)).toHaveLength(18);
    expect(captionVariants(s)).toHaveLength(3);
  });

  it('every paraphrase means the scene, every swapped caption does not', () => {
    fc.assert(fc.property(fc.nat(100_000), fc.nat(1000), (i, salt) => {
      const s = scene(i);
      for (const p of paraphrases(s)) expect(captionMatchesScene(p, s)).toBe(true);
      const rng = new Rng(salt);
      for (let k = 0; k < 5; k++) {
        const neg = swappedCaption(s, rng);
        expect(captionSemantics(neg)).not.toBeNull();
        expect(captionMatchesScene(neg, s)).toBe(false);
      }
    }), { numRuns: 300 });
  });

  it('rejects text outside the grammar', () => {
    for (const t of ['', 'IMG_2031.jpg', 'click to enlarge', 'a red circle', 'a red blob on a blue background',
      'a red circle above on a blue background']) {
      expect(captionSemantics(t)).toBeNull();
    }
    expect(normaliseCaption('  A picture of A Red circle,  on a BLUE background. ')).toBe('a red circle on a blue background');
  });
});
