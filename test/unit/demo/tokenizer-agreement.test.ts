import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadTokenizer } from '../../../src/models/blip/tokenizer.ts';

/**
 * The demo model was trained with tools/demo-model/tokenizer.py; the runtime tokenizes with
 * the exported tokenizer.json. Both must give the same ids, or the model sees other inputs
 * than it learned on (fixture: tools/demo-model/tokenizer_cases.py).
 */
const fixture = JSON.parse(readFileSync(new URL('../../fixtures/demo/tokenizer-cases.json', import.meta.url), 'utf8')) as {
  cases: { text: string; ids: number[] }[];
};

describe('demo model tokenizer', () => {
  for (const role of ['captioner', 'filter']) {
    it(`${role}: runtime ids equal the training ids for ${fixture.cases.length} demo texts`, () => {
      const tok = loadTokenizer(new URL(`../../../models/demo/${role}`, import.meta.url).pathname);
      const mismatches = fixture.cases.filter((c) => JSON.stringify(tok.encode(c.text)) !== JSON.stringify(c.ids));
      expect(mismatches.slice(0, 3).map((c) => ({ text: c.text, want: c.ids, got: tok.encode(c.text) }))).toEqual([]);
      expect(tok.special).toMatchObject({ bos: 5, sep: 3, pad: 0, cls: 2 });
    });
  }
});
