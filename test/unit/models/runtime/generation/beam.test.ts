import { describe, expect, it } from 'vitest';
import { generate } from '../../../../../src/models/runtime/generation/index.ts';
import type { GenerationOptions, SpecialIds } from '../../../../../src/models/runtime/generation/types.ts';
import { LogSumExpLM, TableLM, hashedLM, lastTokenTable } from '../../../../helpers/fake-lm.ts';

// vocab: 0 pad, 1 cls, 2 sep (= eos), 3 bos, 4.. words
const special: SpecialIds = { pad: 0, cls: 1, sep: 2, eos: 2, bos: 3 };
const base: GenerationOptions = {
  method: 'beam', maxLength: 10, minLength: 0, numBeams: 3, lengthPenalty: 1, topP: 1, topK: 0,
  temperature: 1, repetitionPenalty: 1, numReturnSequences: 1, prompt: '', seed: 0,
};
const greedy: GenerationOptions = { ...base, method: 'greedy', numBeams: 1 };
const L = Math.log;

describe('beam search', () => {
  // bos → A (.6) or B (.4); A → C/D/E (.34/.33/.33); B → C (.99); C, D, E → eos (.9).
  // Greedy takes A: .6·.34·.9 = .18; the beam finds B C: .4·.99·.9 = .36.
  const table = lastTokenTable(9, {
    3: { 4: L(0.6), 5: L(0.4) },
    4: { 6: L(0.34), 7: L(0.33), 8: L(0.33) },
    5: { 6: L(0.99), 7: L(0.01) },
    6: { 2: L(0.9), 7: L(0.1) }, 7: { 2: L(0.9), 8: L(0.1) }, 8: { 2: L(0.9), 6: L(0.1) },
  }, -Infinity);

  it('finds a sequence greedy misses', async () => {
    expect(await generate(new TableLM(9, 1, table), [[3]], greedy, special, ['a'])).toEqual([[[3, 4, 6, 2]]]);
    expect(await generate(new TableLM(9, 1, table), [[3]], { ...base, numBeams: 2 }, special, ['a'])).toEqual([[[3, 5, 6, 2]]]);
  });

  it('returns the best numReturnSequences hypotheses, best first', async () => {
    const [seqs] = await generate(new TableLM(9, 1, table), [[3]], { ...base, numBeams: 3, numReturnSequences: 3 }, special, ['a']);
    expect(seqs[0]).toEqual([3, 5, 6, 2]);
    expect(seqs[1]).toEqual([3, 4, 6, 2]);
    expect(seqs).toHaveLength(3);
    expect(new Set(seqs.map((s) => s.join(','))).size).toBe(3);
  });

  it('divides by the generated length (eos counted, prefix not) to the power length_penalty', async () => {
    // After the prompt [bos, 9, 10]: X (logit 0) → eos, or Y (logit −0.4) → Z → W → eos, all
    // continuations near-certain. Sums: short ≈ −0.513 over 2 generated tokens, long ≈ −0.913
    // over 4: lp=1 prefers the long one (−0.228 > −0.256); lp=0 the short one. Counting the
    // 3 prefix tokens too would flip lp=1 to the short one (−0.128 > −0.152).
    const V = 15;
    const t = lastTokenTable(V, { 10: { 11: 0, 12: -0.4 }, 11: { 2: 0 }, 12: { 13: 0 }, 13: { 14: 0 }, 14: { 2: 0 } });
    const run = (lengthPenalty: number) => generate(new TableLM(V, 1, t), [[3, 9, 10]], { ...base, numBeams: 2, lengthPenalty }, special, ['a']);
    expect((await run(1))[0][0]).toEqual([3, 9, 10, 12, 13, 14, 2]);
    expect((await run(0))[0][0]).toEqual([3, 9, 10, 11, 2]);
  });

  it('respects minLength', async () => {
    const [[seq]] = await generate(new TableLM(9, 1, table), [[3]], { ...base, numBeams: 2, minLength: 6 }, special, ['a']);
    expect(seq.indexOf(2)).toBeGreaterThanOrEqual(5);
  });

  it('stops at maxLength without appending eos to a full-length beam', async () => {
    const loop = lastTokenTable(6, { 3: { 4: 0, 5: -1 }, 4: { 5: 0, 4: -1 }, 5: { 4: 0, 5: -1 } });
    const [[seq]] = await generate(new TableLM(6, 1, loop), [[3]], { ...base, numBeams: 2, maxLength: 5 }, special, ['a']);
    expect(seq).toHaveLength(5);
    expect(seq[4]).not.toBe(2);
  });

  it('with one beam equals greedy', async () => {
    for (const picture of [0, 1, 2, 3]) {
      const lm = hashedLM(12, 2, 0.5);
      const fn = (_i: number, t: number[]) => lm(picture, t);
      const g = await generate(new TableLM(12, 1, fn), [[3]], { ...greedy, maxLength: 9 }, special, ['a']);
      const b = await generate(new TableLM(12, 1, fn), [[3]], { ...base, numBeams: 1, maxLength: 9 }, special, ['a']);
      expect(b).toEqual(g);
    }
  });

  it('takes log-softmax from the decoder\'s log-sum-exp where it gives one: the same beams', async () => {
    const lm = hashedLM(12, 2, 0.8);
    for (const opts of [
      { ...base, numBeams: 3, numReturnSequences: 2, maxLength: 12 },
      { ...base, numBeams: 2, maxLength: 10, minLength: 5, repetitionPenalty: 1.3, lengthPenalty: 0.6 },
    ]) {
      const scored = new LogSumExpLM(12, 3, lm);
      const got = await generate(scored, [[3], [3], [3]], opts, special, ['a', 'b', 'c']);
      expect(got).toEqual(await generate(new TableLM(12, 3, lm), [[3], [3], [3]], opts, special, ['a', 'b', 'c']));
      expect(scored.scoredSteps).toBe(scored.stepRows.length);
    }
  });

  it('decodes each image as if it were alone, and drops finished images from the session', async () => {
    const lm = hashedLM(12, 2, 1.2);
    const opts = { ...base, numBeams: 3, numReturnSequences: 2, maxLength: 12 };
    const batch = new TableLM(12, 3, lm);
    const together = await generate(batch, [[3], [3], [3]], opts, special, ['a', 'b', 'c']);
    for (let i = 0; i < 3; i++) {
      const alone = await generate(new TableLM(12, 1, (_x, t) => lm(i, t)), [[3]], opts, special, ['x']);
      expect(together[i]).toEqual(alone[0]);
    }
    // The prefix runs once per image, then 3 beams per image until images finish.
    expect(batch.stepRows[0]).toBe(3);
    expect(batch.stepRows[1]).toBe(9);
    expect(Math.min(...batch.stepRows.slice(1))).toBeLessThan(9);
  });
});
