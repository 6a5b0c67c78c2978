import { describe, expect, it } from 'vitest';
import { argmax, logSoftmax, minLength, repetitionPenalty, softmax, sortByProbability, temperature, topK, topP } from '../../../../../src/models/runtime/generation/processors.ts';

const f32 = (xs: number[]) => Float32Array.from(xs);
const kept = (s: Float32Array) => Array.from(s).map((x, i) => (x === -Infinity ? -1 : i)).filter((i) => i >= 0);

describe('repetitionPenalty (HF semantics)', () => {
  it('divides positive and multiplies negative scores of present tokens, once each', () => {
    const s = f32([2, -2, 3, 1]);
    repetitionPenalty(2)!(s, { tokens: [0, 1, 1, 0] });
    expect(Array.from(s)).toEqual([1, -4, 3, 1]);
  });
  it('is off at 1.0', () => {
    expect(repetitionPenalty(1)).toBeNull();
  });
});

describe('minLength', () => {
  it('forbids eos while the whole sequence is shorter than min_length', () => {
    const p = minLength(4, 2)!;
    const s = f32([0, 0, 5]);
    p(s, { tokens: [9, 9, 9] });
    expect(s[2]).toBe(-Infinity);
    const t = f32([0, 0, 5]);
    p(t, { tokens: [9, 9, 9, 9] });
    expect(t[2]).toBe(5);
  });
});

describe('temperature, topK, topP', () => {
  it('temperature scales logits', () => {
    const s = f32([2, -4]);
    temperature(2)!(s, { tokens: [] });
    expect(Array.from(s)).toEqual([1, -2]);
  });

  it('topK keeps the k best and ties with the k-th', () => {
    const s = f32([1, 5, 3, 3, 0]);
    topK(2)!(s, { tokens: [] });
    expect(kept(s)).toEqual([1, 2, 3]);
    const all = f32([1, 2]);
    topK(50)!(all, { tokens: [] });
    expect(kept(all)).toEqual([0, 1]);
  });

  it('topP keeps the smallest top set whose probability exceeds p', () => {
    const probs = [0.5, 0.3, 0.15, 0.05];
    const logits = () => f32(probs.map(Math.log));
    const at = (p: number) => { const s = logits(); topP(p)!(s, { tokens: [] }); return kept(s); };
    expect(at(0.4)).toEqual([0]);
    expect(at(0.6)).toEqual([0, 1]);
    expect(at(0.9)).toEqual([0, 1, 2]);
    expect(at(0.97)).toEqual([0, 1, 2, 3]);
    // The best token always survives.
    expect(at(0.01)).toEqual([0]);
    expect(topP(1)).toBeNull();
  });

  it('topP keeps the same set as HF\'s ascending-sort formulation, long tails included', () => {
    // HF: sort ascending, cumsum of softmax, remove where cumsum <= 1 - p, keep the last one.
    const hf = (logits: Float32Array, p: number) => {
      const probs = softmax(logits);
      const order = Array.from(logits.keys()).sort((a, b) => logits[a] - logits[b]);
      const removed = new Set<number>();
      let cum = 0;
      order.forEach((i, r) => { cum += probs[i]; if (cum <= 1 - p && r < order.length - 1) removed.add(i); });
      return Array.from(logits.keys()).filter((i) => !removed.has(i));
    };
    let seed = 7;
    const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
    for (let trial = 0; trial < 30; trial++) {
      const n = trial < 10 ? 50 : 3000;
      // trials ≥ 20: one dominant token and a long tail of tiny probabilities below the first threshold
      const logits = Float32Array.from({ length: n }, (_, i) => (trial >= 20 ? (i === 0 ? 9 : rand() * 0.5) : -Math.log(-Math.log(rand())) * (1 + (trial % 3))));
      const p = [0.5, 0.9, 0.95][trial % 3];
      const s = logits.slice();
      topP(p)!(s, { tokens: [] });
      expect(kept(s), `trial ${trial}`).toEqual(hf(logits, p));
    }
  });

  it('topP ignores tokens top-k already removed', () => {
    const s = f32([Math.log(0.7), Math.log(0.2), -Infinity, Math.log(0.1)]);
    topP(0.75)!(s, { tokens: [] });
    expect(kept(s)).toEqual([0, 1]);
  });
});

describe('sortByProbability', () => {
  it('orders ids as the comparator sort does (largest first, ties by id), flat and peaked, ties and denormals', () => {
    let seed = 11;
    const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
    for (const n of [1, 2, 37, 30524]) {
      for (const shape of ['flat', 'peaked', 'ties', 'tiny']) {
        const probs = Float32Array.from({ length: n }, (_, i) =>
          shape === 'flat' ? 1 / n + rand() * 1e-9
            : shape === 'peaked' ? Math.exp(-rand() * 40)
              : shape === 'ties' ? [0.25, 0.125, 0.5][i % 3]
                : (i % 5) * 1e-40);
        const ids = Array.from(probs.keys()).filter((i) => probs[i] > 0);
        const expected = [...ids].sort((a, b) => probs[b] - probs[a] || a - b);
        sortByProbability(ids, probs);
        expect(ids, `${shape} n=${n}`).toEqual(expected);
      }
    }
  });
});

describe('softmax, logSoftmax, argmax', () => {
  it('agree with each other and pick the first maximum', () => {
    const s = f32([1, 3, 3, -1]);
    const p = softmax(s);
    const lp = logSoftmax(s);
    for (let i = 0; i < 4; i++) expect(Math.log(p[i])).toBeCloseTo(lp[i], 5);
    expect(argmax(s)).toBe(1);
  });
});
