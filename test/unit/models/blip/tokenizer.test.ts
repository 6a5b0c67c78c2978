import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isCapfiltError } from '../../../../src/core/errors.ts';
import { loadTokenizer } from '../../../../src/models/blip/tokenizer.ts';

const FIX = new URL('../../../fixtures/tokenizer/', import.meta.url).pathname;
const tmp = mkdtempSync(join(tmpdir(), 'capfilt-tok-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

// Expected ids worked out by hand from vocab.txt with BERT's rules (lowercase, strip accents,
// split punctuation and CJK characters, greedy longest-prefix WordPiece, [UNK] for a word
// that cannot be pieced together).
const CASES: [string, number[]][] = [
  ['A picture of a dog.', [3, 10, 13, 12, 10, 14, 6, 4]],
  ['Unbelievable playing xyz', [3, 26, 27, 28, 24, 25, 36, 37, 38, 4]],
  ['Café 中国!', [3, 33, 34, 35, 8, 4]],
  ['zebra', [3, 2, 4]],
  ['  WOMAN, sitting   on the beach with her cats ', [3, 16, 7, 18, 19, 11, 22, 21, 23, 15, 32, 4]],
  ["a man's red car", [3, 10, 17, 9, 2, 29, 31, 4]],
  ['[DEC] blue car', [3, 39, 30, 31, 4]],
  ['', [3, 4]],
];

function make(name: string, files: Record<string, string>): string {
  const dir = join(tmp, name);
  mkdirSync(dir, { recursive: true });
  for (const [f, content] of Object.entries(files)) writeFileSync(join(dir, f), content);
  return dir;
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    if (isCapfiltError(e)) return e.code;
    throw e;
  }
  return undefined;
}

describe.each(['json', 'vocab'])('loadTokenizer(%s folder)', (kind) => {
  const tok = loadTokenizer(join(FIX, kind));

  it.each(CASES)('encodes %j', (text, ids) => {
    expect(tok.encode(text)).toEqual(ids);
  });

  it('resolves the special ids from the files', () => {
    expect(tok.special).toEqual({ bos: 39, enc: 40, pad: 0, cls: 3, sep: 4, eos: 4, unk: 2 });
    expect(tok.vocabSize).toBe(41);
  });

  it('decodes without control tokens but keeps [UNK] visible', () => {
    expect(tok.decode([39, 10, 14, 2, 21, 23, 15, 32, 4, 0, 0])).toBe('a dog [UNK] with her cats');
    expect(tok.decode([3, 10, 14, 6, 4])).toBe('a dog.');
    expect(tok.decode([4, 0])).toBe('');
    expect(tok.decode([])).toBe('');
  });

  it('pads to the longest row with attention masks', () => {
    const b = tok.encodeBatch(['a dog', 'a woman sitting on the beach']);
    expect(b.length).toBe(8);
    expect(b.ids).toEqual([[3, 10, 14, 4, 0, 0, 0, 0], [3, 10, 16, 18, 19, 11, 22, 4]]);
    expect(b.attentionMask).toEqual([[1, 1, 1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1, 1]]);
  });

  it('truncates keeping [CLS] and [SEP], and pads to max_length', () => {
    const b = tok.encodeBatch(['a dog', 'a woman sitting on the beach'], { maxLength: 6, padding: 'max_length' });
    expect(b.ids).toEqual([[3, 10, 14, 4, 0, 0], [3, 10, 16, 18, 19, 4]]);
    expect(b.attentionMask).toEqual([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]]);
    const longest = tok.encodeBatch(['a dog', 'a woman sitting on the beach'], { maxLength: 7 });
    expect(longest.length).toBe(7);
  });
});

describe('vocab.txt and tokenizer.json folders agree', () => {
  it('on ids for a wider set of texts', () => {
    const a = loadTokenizer(join(FIX, 'json'));
    const b = loadTokenizer(join(FIX, 'vocab'));
    const texts = ['THE RED CARS!!', 'cafés, cats; dogs?', 'playingunbelievable', '\tweird\u00a0 spaces\n', 'Ünbelievable', 'a' + 'x'.repeat(120)];
    for (const t of texts) expect(b.encode(t), t).toEqual(a.encode(t));
  });
});

describe('special tokens outside vocab.txt', () => {
  const vocabTxt = readFileSync(join(FIX, 'vocab', 'vocab.txt'), 'utf8');

  it('takes explicit ids from added_tokens_decoder', () => {
    const dir = make('decoder', { 'vocab.txt': vocabTxt });
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({
      do_lower_case: true, bos_token: '[DEC]', additional_special_tokens: ['[ENC]'],
      added_tokens_decoder: { '50': { content: '[ENC]', special: true }, '51': { content: '[DEC]', special: true } },
    }));
    const tok = loadTokenizer(dir);
    expect(tok.special.bos).toBe(51);
    expect(tok.special.enc).toBe(50);
    expect(tok.encode('[ENC] dog')).toEqual([3, 50, 14, 4]);
  });

  it('keeps case when do_lower_case is false', () => {
    const dir = make('cased', { 'vocab.txt': vocabTxt, 'tokenizer_config.json': JSON.stringify({ do_lower_case: false }) });
    expect(loadTokenizer(dir).encode('Dog dog')).toEqual([3, 2, 14, 4]);
  });
});

describe('bad tokenizer folders give TOKENIZER_INVALID', () => {
  it('for an empty folder', () => {
    expect(() => loadTokenizer(make('empty', {}))).toThrow(/TOKENIZER_INVALID: .*empty.*neither tokenizer\.json nor vocab\.txt/);
  });

  it('for tokenizer.json that is not JSON', () => {
    expect(() => loadTokenizer(make('badjson', { 'tokenizer.json': '{"model": ' }))).toThrow(/TOKENIZER_INVALID: .*tokenizer\.json is not valid JSON/);
  });

  it('for a tokenizer.json the library cannot build', () => {
    expect(codeOf(() => loadTokenizer(make('nomodel', { 'tokenizer.json': '{"added_tokens": []}' })))).toBe('TOKENIZER_INVALID');
  });

  it('for a vocabulary without [SEP]', () => {
    expect(() => loadTokenizer(make('nosep', { 'vocab.txt': '[PAD]\n[UNK]\n[CLS]\ndog\n' }))).toThrow(/TOKENIZER_INVALID: .*sep token \[SEP\]/);
  });

  it('for a vocabulary without its unknown token', () => {
    expect(() => loadTokenizer(make('nounk', { 'vocab.txt': '[PAD]\n[CLS]\n[SEP]\ndog\n' }))).toThrow(/TOKENIZER_INVALID: .*unk token \[UNK\]/);
  });

  it('for an unreadable tokenizer_config.json', () => {
    expect(() => loadTokenizer(make('badcfg', { 'vocab.txt': '[PAD]\n', 'tokenizer_config.json': 'nope' }))).toThrow(/TOKENIZER_INVALID: .*tokenizer_config\.json/);
  });
});
