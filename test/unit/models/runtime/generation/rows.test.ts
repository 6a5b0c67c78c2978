import { describe, expect, it } from 'vitest';
import { generate } from '../../../../../src/models/runtime/generation/index.ts';
import type { GenerationOptions, SpecialIds } from '../../../../../src/models/runtime/generation/types.ts';
import { SoftmaxLM, TableLM, hashedLM, lastTokenTable } from '../../../../helpers/fake-lm.ts';
import { applyAll, minLength, repetitionPenalty, softmax, temperature, topK, topP } from '../../../../../src/models/runtime/generation/processors.ts';
import { sampleRng } from '../../../../../src/models/runtime/generation/rng.ts';

// vocab: 0 pad, 1 cls, 2 sep (= eos), 3 bos, 4.. words
const special: SpecialIds = { pad: 0, cls: 1, sep: 2, eos: 2, bos: 3 };
const base: GenerationOptions = {
  method: 'greedy', maxLength: 10, minLength: 0, numBeams: 1, lengthPenalty: 1, topP: 1, topK: 0,
  temperature: 1, repetitionPenalty: 1, numReturnSequences: 1, prompt: '', seed: 0,
};

describe('greedy', () => {
  // 3 → 4 → 5 → eos;  from 6 the chain loops 6 → 7 → 6 …
  const table = lastTokenTable(8, { 3: { 4: 0, 6: -1 }, 4: { 5: 0 }, 5: { 2: 0, 7: -0.5 }, 6: { 7: 0 }, 7: { 6: 0 } });

  it('follows the argmax, stops at eos and keeps the prefix', async () => {
    const lm = new TableLM(8, 1, table);
    expect(await generate(lm, [[3]], base, special, ['a'])).toEqual([[[3, 4, 5, 2]]]);
  });

  it('counts the prefix in maxLength', async () => {
    const lm = new TableLM(8, 1, table);
    expect(await generate(lm, [[3, 6]], { ...base, maxLength: 5 }, special, ['a'])).toEqual([[[3, 6, 7, 6, 7]]]);
  });

  it('generates one token even when the prefix already reaches maxLength (as HF)', async () => {
    const lm = new TableLM(8, 1, table);
    expect(await generate(lm, [[3, 6]], { ...base, maxLength: 2 }, special, ['a'])).toEqual([[[3, 6, 7]]]);
  });

  it('respects minLength by forbidding eos until the sequence is long enough', async () => {
    const lm = new TableLM(8, 1, table);
    const [[seq]] = await generate(lm, [[3]], { ...base, minLength: 5 }, special, ['a']);
    // eos is forbidden at length 3 and 4, so 5 → 7 (second best), then 7 → 6 …, eos only once allowed.
    expect(seq.slice(0, 4)).toEqual([3, 4, 5, 7]);
    expect(seq.indexOf(2)).toBe(-1);
    expect(seq.length).toBe(10);
  });

  it('applies the repetition penalty to prefix and generated tokens', async () => {
    // Without a penalty 4 → 4 → 4 …; a strong penalty makes 4 lose to 5 once it is present.
    const loop = lastTokenTable(8, { 3: { 4: 0, 5: -0.5 }, 4: { 4: 1, 5: 0.8, 2: -5 }, 5: { 2: 0 } });
    const plain = await generate(new TableLM(8, 1, loop), [[3]], { ...base, maxLength: 5 }, special, ['a']);
    expect(plain[0][0]).toEqual([3, 4, 4, 4, 4]);
    const penalised = await generate(new TableLM(8, 1, loop), [[3]], { ...base, maxLength: 5, repetitionPenalty: 2 }, special, ['a']);
    expect(penalised[0][0]).toEqual([3, 4, 5, 2]);
  });

  it('stops each row at its own eos and drops finished rows from the session', async () => {
    const perImage = (image: number, tokens: number[]) => (image === 0 ? table(image, tokens) : lastTokenTable(8, { 3: { 6: 0 }, 6: { 7: 0 }, 7: { 6: 0 } })(image, tokens));
    const lm = new TableLM(8, 2, perImage);
    const out = await generate(lm, [[3], [3]], { ...base, maxLength: 6 }, special, ['a', 'b']);
    expect(out).toEqual([[[3, 4, 5, 2]], [[3, 6, 7, 6, 7, 6]]]);
    expect(lm.stepRows).toEqual([2, 2, 2, 1, 1]);
  });
});

describe('nucleus sampling', () => {
  const opts: GenerationOptions = { ...base, method: 'nucleus', topP: 0.9, topK: 0, repetitionPenalty: 1.1, numReturnSequences: 3, seed: 42, maxLength: 12 };
  // The LM's logits depend on which picture a row shows (ids), not on its batch position.
  const hashed = hashedLM(16, 2, 0.3);
  const lmOf = (pictures: number[]) => new TableLM(16, pictures.length, (i, t) => hashed(pictures[i], t));
  const lmFor = (images: number) => lmOf(Array.from({ length: images }, (_, i) => i));

  it('gives each image the same samples whatever the batch around it', async () => {
    const all = await generate(lmOf([0, 1, 2]), [[3], [3], [3]], opts, special, ['img-a', 'img-b', 'img-c']);
    const alone = await generate(lmOf([1]), [[3]], opts, special, ['img-b']);
    const reordered = await generate(lmOf([2, 0, 1]), [[3], [3], [3]], opts, special, ['img-c', 'img-a', 'img-b']);
    expect(alone[0]).toEqual(all[1]);
    expect(reordered).toEqual([all[2], all[0], all[1]]);
    expect(all[0]).not.toEqual(all[1]);
  });

  it('runs the prefix once per image, then K rows per image', async () => {
    const lm = lmFor(2);
    // minLength keeps every row alive past the second step.
    await generate(lm, [[3], [3]], { ...opts, minLength: 4 }, special, ['a', 'b']);
    expect(lm.stepRows.slice(0, 3)).toEqual([2, 6, 6]);
  });

  it('draws each return sequence from its own stream: K=2 is a prefix of K=4', async () => {
    const two = await generate(lmFor(1), [[3]], { ...opts, numReturnSequences: 2 }, special, ['k']);
    const four = await generate(lmFor(1), [[3]], { ...opts, numReturnSequences: 4 }, special, ['k']);
    expect(four[0].slice(0, 2)).toEqual(two[0]);
    expect(new Set(four[0].map((s) => s.join(','))).size).toBeGreaterThan(1);
  });

  it('changes with the seed and the key, and repeats with both fixed', async () => {
    const a = await generate(lmFor(1), [[3]], opts, special, ['k']);
    const again = await generate(lmFor(1), [[3]], opts, special, ['k']);
    const otherSeed = await generate(lmFor(1), [[3]], { ...opts, seed: 43 }, special, ['k']);
    const otherKey = await generate(lmFor(1), [[3]], opts, special, ['k2']);
    expect(again).toEqual(a);
    expect(otherSeed).not.toEqual(a);
    expect(otherKey).not.toEqual(a);
  });

  it('samples tokens in proportion to their probability', async () => {
    // After bos: 4 with p=.5, 5 with .3, 6 with .2; each continues straight to eos.
    const table = lastTokenTable(8, { 3: { 4: Math.log(0.5), 5: Math.log(0.3), 6: Math.log(0.2) }, 4: { 2: 0 }, 5: { 2: 0 }, 6: { 2: 0 } }, -Infinity);
    const n = 1500;
    const lm = new TableLM(8, 1, table);
    const [seqs] = await generate(lm, [[3]], { ...opts, topP: 1, repetitionPenalty: 1, numReturnSequences: n }, special, ['freq']);
    const freq = [4, 5, 6].map((t) => seqs.filter((s) => s[1] === t).length / n);
    expect(freq[0]).toBeCloseTo(0.5, 1);
    expect(freq[1]).toBeCloseTo(0.3, 1);
    expect(freq[2]).toBeCloseTo(0.2, 1);
  });

  it('samples the tokens the topP processor followed by a softmax over the whole vocabulary gives', async () => {
    const V = 3000;
    const fn = hashedLM(V, special.eos, -1);
    const o = { ...opts, topP: 0.8, topK: 0, temperature: 0.7, repetitionPenalty: 1.2, maxLength: 9, minLength: 4, numReturnSequences: 3 };
    const [got] = await generate(new TableLM(V, 1, fn), [[3, 9]], o, special, ['ref']);
    const processors = [repetitionPenalty(o.repetitionPenalty), minLength(o.minLength, special.eos), temperature(o.temperature), topK(o.topK), topP(o.topP)];
    const want = [0, 1, 2].map((r) => {
      const rng = sampleRng(o.seed, 'ref', r);
      const tokens = [3, 9];
      while (tokens[tokens.length - 1] !== special.eos && tokens.length < o.maxLength) {
        const scores = Float32Array.from(fn(0, tokens));
        applyAll(processors, scores, { tokens });
        const probs = softmax(scores);
        const u = rng.next();
        let cum = 0;
        let pick = -1;
        for (let i = 0; i < V && pick < 0; i++) {
          if (probs[i] === 0) continue;
          cum += probs[i];
          if (u < cum) pick = i;
        }
        tokens.push(pick);
      }
      return tokens;
    });
    expect(got).toEqual(want);
  });

  it('takes the probabilities from the decoder\'s softmax where it gives one: the same samples, one call per step for all rows', async () => {
    const V = 3000;
    const fn = hashedLM(V, special.eos, -1);
    for (const o of [
      { ...opts, topP: 0.8, temperature: 0.7, repetitionPenalty: 1.2, maxLength: 9, minLength: 4 },
      { ...opts, topP: 1, topK: 40, maxLength: 8 },
    ]) {
      const lm = new SoftmaxLM(V, 2, fn);
      const got = await generate(lm, [[3, 9], [3, 9]], o, special, ['a', 'b']);
      expect(got).toEqual(await generate(new TableLM(V, 2, fn), [[3, 9], [3, 9]], o, special, ['a', 'b']));
      // One softmax per step after the prefix, over every row still decoding.
      expect(lm.softmaxRows).toEqual(lm.stepRows.map((rows, i) => (i === 0 ? 6 : rows)));
    }
    // Greedy never asks for probabilities.
    const greedyLm = new SoftmaxLM(V, 1, fn);
    await generate(greedyLm, [[3]], { ...base, maxLength: 6 }, special, ['g']);
    expect(greedyLm.softmaxRows).toEqual([]);
  });

  it('reads a confident step\'s nucleus off the decoder\'s top tokens: the same samples as from the whole vocabulary', async () => {
    const V = 3000;
    const fn = hashedLM(V, special.eos, -1);
    // Temperature 0.15 makes most steps' nuclei fit in 16 tokens; 1.0 makes them need hundreds (the fallback).
    for (const temperature of [0.15, 1]) {
      const o = { ...opts, topP: 0.9, temperature, repetitionPenalty: 1.2, maxLength: 10, minLength: 4 };
      const got = await generate(new SoftmaxLM(V, 2, fn, 16), [[3, 9], [3, 9]], o, special, ['a', 'b']);
      expect(got).toEqual(await generate(new TableLM(V, 2, fn), [[3, 9], [3, 9]], o, special, ['a', 'b']));
    }
    // A nucleus of four tokens (0.3, 0.25, 0.2, 0.15 before 0.75 reaches 0.8), the fourth drawn about one time in six.
    const four = lastTokenTable(16, { 3: { 4: Math.log(0.3), 5: Math.log(0.25), 6: Math.log(0.2), 7: Math.log(0.15), 8: Math.log(0.1) }, 4: { 2: 0 }, 5: { 2: 0 }, 6: { 2: 0 }, 7: { 2: 0 }, 8: { 2: 0 } }, -Infinity);
    const o = { ...opts, topP: 0.8, repetitionPenalty: 1, numReturnSequences: 300 };
    const [got] = await generate(new SoftmaxLM(16, 1, four, 8), [[3]], o, special, ['f']);
    expect(got).toEqual((await generate(new TableLM(16, 1, four), [[3]], o, special, ['f']))[0]);
    expect(new Set(got.map((s) => s[1]))).toEqual(new Set([4, 5, 6, 7]));
  });

  it('takes the nucleus from the top tokens when they hold it, and from the whole vocabulary when not', async () => {
    // A decoder whose top list claims token 7 has all the probability: sampled wherever used.
    class Claiming extends SoftmaxLM {
      async softmax(scores: Float32Array, rows: number) {
        const { probs } = await super.softmax(scores, rows);
        return { probs, top: { k: 1, ids: new Int32Array(rows).fill(7), probs: new Float32Array(rows).fill(this.claim) } };
      }
      constructor(private readonly claim: number) { super(16, 1, hashedLM(16, 2, -5)); }
    }
    const o = { ...opts, topP: 0.9, repetitionPenalty: 1, maxLength: 8, numReturnSequences: 5 };
    const [used] = await generate(new Claiming(1), [[3]], o, special, ['c']);
    expect(used.every((s) => s.slice(1).every((t) => t === 7))).toBe(true);
    // Claiming less than p: the top cannot hold the nucleus, so the whole vocabulary decides.
    const [notUsed] = await generate(new Claiming(0.5), [[3]], o, special, ['c']);
    expect(notUsed).toEqual((await generate(new TableLM(16, 1, hashedLM(16, 2, -5)), [[3]], o, special, ['c']))[0]);
  });

  it('never samples a token the processors forbid, with the decoder\'s softmax too', async () => {
    // Until length 4 eos is the likeliest token by far; min length forbids it (−∞, probability 0).
    const table = lastTokenTable(8, { 3: { 2: 5, 4: 0, 5: 0 }, 4: { 2: 5, 5: 0 }, 5: { 2: 5, 4: 0 } }, -Infinity);
    for (const lm of [() => new SoftmaxLM(8, 1, table), () => new SoftmaxLM(8, 1, table, 4), () => new TableLM(8, 1, table)]) {
      for (const topP of [1, 0.95]) {
        const [seqs] = await generate(lm(), [[3]], { ...opts, topP, repetitionPenalty: 1, minLength: 4, numReturnSequences: 100 }, special, ['m']);
        const eosAt = seqs.map((s) => s.indexOf(2));
        expect(eosAt.every((at) => at === -1 || at >= 4)).toBe(true);
        expect(eosAt.filter((at) => at === 4).length).toBeGreaterThan(90);
      }
    }
  });

  it('never samples outside top-p and top-k', async () => {
    const table = lastTokenTable(8, { 3: { 4: Math.log(0.5), 5: Math.log(0.3), 6: Math.log(0.2) }, 4: { 2: 0 }, 5: { 2: 0 }, 6: { 2: 0 } }, -Infinity);
    const p = await generate(new TableLM(8, 1, table), [[3]], { ...opts, topP: 0.6, repetitionPenalty: 1, numReturnSequences: 200 }, special, ['p']);
    expect(new Set(p[0].map((s) => s[1]))).toEqual(new Set([4, 5]));
    const k = await generate(new TableLM(8, 1, table), [[3]], { ...opts, topP: 1, topK: 1, repetitionPenalty: 1, numReturnSequences: 50 }, special, ['k']);
    expect(new Set(k[0].map((s) => s[1]))).toEqual(new Set([4]));
  });
});
