import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { isCapfiltError } from '../../../../src/core/errors.ts';
import { ClipTokenizer, htmlUnescape, loadClipTokenizer } from '../../../../src/models/clip/tokenizer.ts';

const fixtures = new URL('../../../fixtures/clip-tokenizer/', import.meta.url).pathname;

interface Case {
  text: string;
  ids: number[];
  input_ids_77: number[];
  attention_mask_77: number[];
  truncated?: boolean;
  decoded: string;
}
interface CaseFile {
  sot: number;
  eot: number;
  context_length: number;
  cases: Case[];
  decode_cases?: { ids: number[]; decoded: string }[];
}

const readJson = <T>(name: string): T => JSON.parse(readFileSync(join(fixtures, name), 'utf8')) as T;
const goldens = readJson<CaseFile>('goldens.json');
const extra = readJson<CaseFile>('extra-cases.json');
const vocab = readJson<Record<string, number>>('vocab.json');
const merges = readFileSync(join(fixtures, 'merges.txt'), 'utf8').split('\n').slice(1).filter((l) => l !== '');

const tmp = mkdtempSync(join(tmpdir(), 'capfilt-clip-tok-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let folders = 0;

/** A temp folder with the given files (string contents) and fixture files copied by name. */
function folder(files: Record<string, string>, copy: string[] = []): string {
  const dir = join(tmp, `f${folders++}`);
  mkdirSync(dir);
  for (const name of copy) copyFileSync(join(fixtures, name), join(dir, name));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

/** openai/clip-vit-base-patch32's tokenizer.json layout, from the fixture vocabulary. */
function tokenizerJson(mergeStyle: 'strings' | 'pairs', specials = { sot: vocab['<|startoftext|>'], eot: vocab['<|endoftext|>'] }): string {
  const v: Record<string, number> = { ...vocab };
  delete v['<|startoftext|>'];
  delete v['<|endoftext|>'];
  return JSON.stringify({
    version: '1.0',
    added_tokens: [
      { id: specials.sot, content: '<|startoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: true, special: true },
      { id: specials.eot, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
    ],
    normalizer: { type: 'Sequence', normalizers: [{ type: 'NFC' }, { type: 'Replace', pattern: { Regex: '\\s+' }, content: ' ' }, { type: 'Lowercase' }] },
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
    model: {
      type: 'BPE', dropout: null, unk_token: '<|endoftext|>', continuing_subword_prefix: '', end_of_word_suffix: '</w>', fuse_unk: false, byte_fallback: false,
      vocab: v,
      merges: mergeStyle === 'strings' ? merges : merges.map((m) => m.split(' ')),
    },
  });
}

function expectCase(tok: ClipTokenizer, c: Case, contextLength: number): void {
  expect(tok.encode(c.text), JSON.stringify(c.text)).toEqual(c.ids);
  const batch = tok.encodeBatch([c.text], { contextLength, padTo: 'max' });
  expect(batch.length).toBe(contextLength);
  expect(batch.attentionMask[0]).toEqual(c.attention_mask_77);
  const real = c.attention_mask_77.reduce((a, b) => a + b, 0);
  expect(batch.ids[0].slice(0, real)).toEqual(c.input_ids_77.slice(0, real));
  if (c.truncated !== undefined) expect(batch.truncated[0]).toBe(c.truncated);
  expect(tok.decode(c.ids)).toBe(c.decoded);
}

function expectCoded(fn: () => unknown, fileName: string): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(isCapfiltError(caught, 'TOKENIZER_INVALID'), String(caught)).toBe(true);
  expect((caught as Error).message).toContain(fileName);
}

const tok = loadClipTokenizer(fixtures);

describe('CLIP tokenizer from vocab.json + merges.txt', () => {
  it('reads the special ids, pad token and context length from the files', () => {
    expect(tok.sot).toBe(goldens.sot);
    expect(tok.eot).toBe(goldens.eot);
    expect(tok.pad).toBe(vocab['<|endoftext|>']);
    expect(tok.vocabSize).toBe(49408);
    expect(tok.mergeCount).toBe(49152 - 256 - 2);
    expect(tok.contextLength).toBe(goldens.context_length);
  });

  it.each(goldens.cases.map((c) => [JSON.stringify(c.text), c] as const))('matches the golden %s', (_name, c) => {
    expectCase(tok, c, goldens.context_length);
  });

  it(`matches all ${extra.cases.length} extra cases of the Python reference`, () => {
    for (const c of extra.cases) expectCase(tok, c, extra.context_length);
  });

  it('decodes byte sequences as Python does (errors="replace", BOM kept)', () => {
    for (const c of extra.decode_cases!) expect(tok.decode(c.ids), JSON.stringify(c.ids)).toBe(c.decoded);
  });
});

describe('CLIP tokenizer from tokenizer.json', () => {
  it('gives the same ids with merges as "a b" strings and with tokenizer_config.json', () => {
    const t = loadClipTokenizer(folder({ 'tokenizer.json': tokenizerJson('strings') }, ['tokenizer_config.json']));
    expect([t.sot, t.eot, t.pad, t.vocabSize]).toEqual([tok.sot, tok.eot, tok.pad, tok.vocabSize]);
    for (const c of [...goldens.cases, ...extra.cases]) expectCase(t, c, 77);
  });

  it('gives the same ids with merges as [a, b] pairs; no pad token means pad 0', () => {
    const t = loadClipTokenizer(folder({ 'tokenizer.json': tokenizerJson('pairs') }));
    expect(t.pad).toBe(0);
    for (const c of goldens.cases) expectCase(t, c, 77);
  });

  it('takes the special ids from the file, not from constants', () => {
    const t = loadClipTokenizer(folder({ 'tokenizer.json': tokenizerJson('strings', { sot: 49407, eot: 49406 }) }));
    expect([t.sot, t.eot]).toEqual([49407, 49406]);
    expect(t.encodeBatch(['a cat']).ids[0]).toEqual([49407, 320, 2368, 49406]);
    expect(t.encode('<|startoftext|> cat')).toEqual([49407, 2368]);
  });
});

describe('encodeBatch', () => {
  it('pads to the longest row with the pad token by default, or to the context length', () => {
    const b = tok.encodeBatch(['a cat', 'a photo of a cat', '']);
    expect(b.length).toBe(7);
    expect(b.ids).toEqual([
      [tok.sot, 320, 2368, tok.eot, tok.pad, tok.pad, tok.pad],
      [tok.sot, 320, 1125, 539, 320, 2368, tok.eot],
      [tok.sot, tok.eot, tok.pad, tok.pad, tok.pad, tok.pad, tok.pad],
    ]);
    expect(b.attentionMask).toEqual([[1, 1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0, 0]]);
    expect(b.truncated).toEqual([false, false, false]);
    const max = tok.encodeBatch(['a cat'], { padTo: 'max', padId: 0 });
    expect(max.length).toBe(77);
    expect(max.ids[0].slice(4)).toEqual(new Array(73).fill(0));
    expect(tok.encodeBatch([])).toEqual({ ids: [], attentionMask: [], length: 0, truncated: [] });
  });

  it('truncates keeping the end-of-text token in the last position', () => {
    const long = 'word '.repeat(200);
    const b = tok.encodeBatch([long, 'word '.repeat(75), 'a cat']);
    expect(b.length).toBe(77);
    expect(b.ids[0]).toHaveLength(77);
    expect(b.ids[0][0]).toBe(tok.sot);
    expect(b.ids[0][76]).toBe(tok.eot);
    expect(b.ids[0].slice(1, 76)).toEqual(tok.encode(long).slice(0, 75));
    expect(b.truncated).toEqual([true, false, false]);
    expect(b.ids[1][76]).toBe(tok.eot);
    const short = tok.encodeBatch(['a photo of a cat'], { contextLength: 4 });
    expect(short.ids[0]).toEqual([tok.sot, 320, 1125, tok.eot]);
    expect(short.truncated[0]).toBe(true);
    expect(tok.encodeBatch(['a cat'], { contextLength: 1 }).ids[0]).toEqual([tok.eot]);
  });

  it('takes the default context length from tokenizer_config.json', () => {
    const t = loadClipTokenizer(folder({ 'tokenizer_config.json': JSON.stringify({ model_max_length: 8 }) }, ['vocab.json', 'merges.txt']));
    expect(t.contextLength).toBe(8);
    expect(t.pad).toBe(0);
    expect(t.encodeBatch(['a photo of a dog on the beach at night']).ids[0]).toHaveLength(8);
    const huge = loadClipTokenizer(folder({ 'tokenizer_config.json': JSON.stringify({ model_max_length: 1e30 }) }, ['vocab.json', 'merges.txt']));
    expect(huge.contextLength).toBe(77);
  });

  it('refuses a context length that is not a positive integer', () => {
    expect(() => tok.encodeBatch(['a'], { contextLength: 0 })).toThrow(/CONFIG_INVALID/);
    expect(() => tok.encodeBatch(['a'], { contextLength: 2.5 })).toThrow(/CONFIG_INVALID/);
  });
});

describe('decode', () => {
  it('prints special tokens literally unless asked to skip them', () => {
    const row = tok.encodeBatch(['A cat.', 'a photo of a cat']).ids[0];
    expect(tok.decode(row)).toBe('<|startoftext|>a cat . <|endoftext|><|endoftext|><|endoftext|>');
    expect(tok.decode(row, { skipSpecialTokens: true })).toBe('a cat . ');
  });

  it('refuses an id outside the vocabulary', () => {
    expect(() => tok.decode([tok.vocabSize])).toThrow(/TOKENIZER_INVALID/);
  });
});

describe('Python semantics', () => {
  it('html.unescape: legacy names by longest prefix, numeric references with Python\'s tables', () => {
    expect(htmlUnescape('&amp;amp;')).toBe('&amp;');
    expect(htmlUnescape('&ampfoo &notin &notin; &lt&gt')).toBe('&foo ¬in ∉ <>');
    expect(htmlUnescape('&#x80;&#150;&#x81;')).toBe('€–\x81');
    expect(htmlUnescape('[&#0;][&#1;][&#13;][&#xD800;][&#99999999999;][&#;][&#x1F600]')).toBe('[\ufffd][][\r][\ufffd][\ufffd][&#;][😀]');
  });

  it('strips and splits whitespace as Python\'s str.strip() and regex \\s do', () => {
    // U+001C is stripped at the ends (str.isspace) but is no \s inside; U+FEFF is neither.
    expect(tok.encode('\x1ca\x1cb\x1c')).toEqual(tok.encode('a\x1cb'));
    expect(tok.encode('a\x1cb')).toHaveLength(3);
    expect(tok.encode('\ufeffa')).not.toEqual(tok.encode('a'));
    expect(tok.encode('a\x85b')).toEqual(tok.encode('a b'));
  });

  it('lowercases İ to i + U+0307 and treats <|endoftext|> in the text as the special token', () => {
    expect(tok.encode('İ')).toEqual(tok.encode('i\u0307'));
    expect(tok.encode('x <|ENDOFTEXT|>')).toEqual([...tok.encode('x'), tok.eot]);
  });
});

describe('robustness', () => {
  const odd = [
    '', ' ', '\u0000', '\ud800', '\udfff\ud800', 'a\ud83d', '🏳️‍🌈'.repeat(50), '\u0345', '&', '&#', '&#x', '&#99999999999999999999999999;',
    '<|startoftext|>', '<|endoftext|><|endoftext|>', '</w>', '\u202e\u2066', '\uffff\ufffe', 'x'.repeat(10_000), '&amp;'.repeat(1000),
  ];

  it('never throws on odd strings and every id decodes', () => {
    for (const s of odd) {
      const ids = tok.encode(s);
      for (const id of ids) expect(id).toBeLessThan(tok.vocabSize);
      expect(typeof tok.decode(ids)).toBe('string');
      expect(tok.encodeBatch([s]).ids[0].at(-1)).toBe(tok.eot);
    }
  });

  it('encodes a lone surrogate as U+FFFD (the reference would raise)', () => {
    expect(tok.encode('a\ud800b')).toEqual(tok.encode('a\ufffdb'));
  });

  it('tokenises a very long text and a very long word in reasonable time', () => {
    const started = Date.now();
    expect(tok.encode('a photo of a cat. '.repeat(20_000)).length).toBeGreaterThan(100_000);
    expect(tok.encode('ab'.repeat(100_000)).length).toBeGreaterThan(0);
    expect(Date.now() - started).toBeLessThan(20_000);
  });

  it('gives the same ids with a warm cache (property)', () => {
    const fresh = () => loadClipTokenizer(fixtures);
    const cold = fresh();
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ unit: 'binary', maxLength: 60 }),
          fc.string({ unit: fc.constantFrom('a', 'cat', ' ', '&amp;', '&', ';', '#', '\ud800', '🍕', "'s", 'İ', '\u0345', '\t', '1', 'ſ'), maxLength: 30 }),
        ),
        (s) => {
          const ids = tok.encode(s);
          expect(ids).toEqual(cold.encode(s));
          expect(ids.every((id) => Number.isInteger(id) && id >= 0 && id < tok.vocabSize)).toBe(true);
          tok.decode(ids);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('coded errors on missing or malformed files', () => {
  it('names the file', () => {
    expectCoded(() => loadClipTokenizer(join(tmp, 'does-not-exist')), 'does-not-exist');
    expectCoded(() => loadClipTokenizer(folder({}, ['vocab.json'])), 'merges.txt');
    expectCoded(() => loadClipTokenizer(folder({}, ['merges.txt'])), 'vocab.json');
    expectCoded(() => loadClipTokenizer(folder({ 'vocab.json': '{"a": ' }, ['merges.txt'])), 'vocab.json');
    expectCoded(() => loadClipTokenizer(folder({ 'vocab.json': '[1, 2]' }, ['merges.txt'])), 'vocab.json');
    expectCoded(() => loadClipTokenizer(folder({ 'vocab.json': '{"a": "x"}' }, ['merges.txt'])), 'vocab.json');
    expectCoded(() => loadClipTokenizer(folder({ 'merges.txt': '#version: 0.2\ni n\nthree parts here\n' }, ['vocab.json'])), 'merges.txt');
    const noSpecials = { ...vocab };
    delete noSpecials['<|startoftext|>'];
    expectCoded(() => loadClipTokenizer(folder({ 'vocab.json': JSON.stringify(noSpecials) }, ['merges.txt'])), 'vocab.json');
    expectCoded(() => loadClipTokenizer(folder({ 'tokenizer.json': '{' })), 'tokenizer.json');
    expectCoded(() => loadClipTokenizer(folder({ 'tokenizer.json': JSON.stringify({ model: { type: 'WordPiece', vocab: {} } }) })), 'tokenizer.json');
    expectCoded(() => loadClipTokenizer(folder({ 'tokenizer.json': JSON.stringify({ model: { type: 'BPE', vocab, merges: [1] } }) })), 'tokenizer.json');
    expectCoded(() => loadClipTokenizer(folder({ 'tokenizer_config.json': '{nope' }, ['vocab.json', 'merges.txt'])), 'tokenizer_config.json');
    expectCoded(() => loadClipTokenizer(folder({ 'special_tokens_map.json': JSON.stringify({ pad_token: '<pad>' }) }, ['vocab.json', 'merges.txt'])), 'vocab.json');
  });
});
