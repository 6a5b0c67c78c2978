import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { generate, generatedIds, hfPadded } from '../../../../../src/models/runtime/generation/index.ts';
import { promptPrefix } from '../../../../../src/models/blip/prompt.ts';
import { isCapfiltError } from '../../../../../src/core/errors.ts';
import type { GenerationOptions, SpecialIds } from '../../../../../src/models/runtime/generation/types.ts';
import { TableLM, hashedLM } from '../../../../helpers/fake-lm.ts';

interface T { dtype: string; shape: number[]; data: number[] }
const t1 = JSON.parse(readFileSync(new URL('../../../../fixtures/generation/t1_greedy.json', import.meta.url), 'utf8'));
const ids = t1.special_ids as { pad: number; cls: number; sep: number; eos: number; bos: number };
// BLIP generates with eos_token_id = sep.
const special: SpecialIds = { pad: ids.pad, cls: ids.cls, sep: ids.sep, eos: ids.sep, bos: ids.bos };
const greedy: GenerationOptions = {
  method: 'greedy', maxLength: t1.max_length, minLength: 0, numBeams: 1, lengthPenalty: 1, topP: 1, topK: 0,
  temperature: 1, repetitionPenalty: 1, numReturnSequences: 1, prompt: '', seed: 0,
};
const rows = (t: T) => Array.from({ length: t.shape[0] }, (_, i) => t.data.slice(i * t.shape[1], (i + 1) * t.shape[1]));

describe('greedy against the HF reference (parity t1, step logits replayed)', () => {
  it.each(['no_prompt', 'with_prompt'])('%s: same sequences, pad filling and length cap', async (section) => {
    const s = t1[section];
    const prefix = rows(s.decoder_input_ids as T);
    if (section === 'with_prompt') {
      expect(rows(s.prompt_input_ids as T).map((p) => promptPrefix(p, special.bos))).toEqual(prefix);
    }
    const steps = s.step_logits as T;
    const [B, S, V] = steps.shape;
    // Row b's logits at step t are what HF computed; the replay checks that stopping, padding
    // and max_length are decided exactly as HF decided them.
    const lm = new TableLM(V, B, (image, tokens) => {
      const t = tokens.length - prefix[image].length;
      expect(t).toBeLessThan(S);
      return steps.data.slice((image * S + t) * V, (image * S + t + 1) * V);
    });
    const out = await generate(lm, prefix, greedy, special, prefix.map((_, i) => String(i)));
    expect(hfPadded(out.map((k) => k[0]), special.pad)).toEqual(rows(s.sequences as T));
  });
});

describe('prompt helpers', () => {
  it('turn [cls, p…, sep] into [bos, p…] and cut the prompt and eos off a result', () => {
    expect(promptPrefix([1, 53, 55, 2], 94)).toEqual([94, 53, 55]);
    expect(promptPrefix([1, 2], 94)).toEqual([94]);
    expect(generatedIds([94, 53, 55, 30, 26, 2], 3, 2)).toEqual([30, 26]);
    expect(generatedIds([94, 30, 26], 1, 2)).toEqual([30, 26]);
  });
});

describe('option checks', () => {
  const lm = () => new TableLM(8, 1, hashedLM(8, 2));
  const bad = async (o: Partial<GenerationOptions>, prefix = [[3]], keys = ['a']) => {
    try {
      await generate(lm(), prefix, { ...greedy, ...o }, special, keys);
    } catch (e) {
      return isCapfiltError(e, 'CONFIG_INVALID') ? (e as Error).message : `other: ${String(e)}`;
    }
    return 'no error';
  };

  it('refuse impossible settings with CONFIG_INVALID', async () => {
    expect(await bad({ numReturnSequences: 2 })).toMatch(/greedy/);
    expect(await bad({ method: 'beam', numBeams: 2, numReturnSequences: 3 })).toMatch(/numReturnSequences \(3\) must be ≤ numBeams \(2\)/);
    expect(await bad({ method: 'nucleus', temperature: 0 })).toMatch(/temperature/);
    expect(await bad({ method: 'nucleus', topP: 0 })).toMatch(/topP/);
    expect(await bad({ maxLength: 0 })).toMatch(/maxLength/);
    expect(await bad({}, [[3], [3]], ['a', 'b'])).toMatch(/session holds 1 rows for 2 images/);
    expect(await bad({}, [[3]], [])).toMatch(/sample keys/);
    expect(await bad({ method: 'sideways' as never })).toMatch(/unknown method/);
  });

  it('return nothing for no images', async () => {
    expect(await generate(new TableLM(8, 0, hashedLM(8, 2)), [], greedy, special, [])).toEqual([]);
  });
});
