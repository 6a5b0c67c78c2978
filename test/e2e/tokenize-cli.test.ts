import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli as capfilt } from '../helpers/cli.ts';

const repo = new URL('../../', import.meta.url).pathname;
const fixtures = join(repo, 'test/fixtures/clip-tokenizer');
const tmp = mkdtempSync(join(tmpdir(), 'capfilt-tokenize-cli-'));
const clip = join(tmp, 'clip');
const blip = join(tmp, 'blip');

interface Golden {
  text: string;
  ids: number[];
}
const goldens = JSON.parse(readFileSync(join(fixtures, 'goldens.json'), 'utf8')) as { sot: number; eot: number; cases: Golden[] };
const golden = (text: string): Golden => goldens.cases.find((c) => c.text === text)!;

beforeAll(() => {
  mkdirSync(clip);
  for (const f of ['vocab.json', 'merges.txt', 'tokenizer_config.json', 'special_tokens_map.json']) cpSync(join(fixtures, f), join(clip, f));
  writeFileSync(join(clip, 'config.json'), JSON.stringify({ model_type: 'clip', architectures: ['CLIPModel'] }));
  cpSync(join(repo, 'test/fixtures/parity/t1-tokenizer'), blip, { recursive: true });
  writeFileSync(join(blip, 'config.json'), JSON.stringify({ model_type: 'blip' }));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('capfilt tokenize', () => {
  it('prints the golden ids of a CLIP folder as JSON lines', async () => {
    const texts = ['a photo of a cat', 'Tom &amp; Jerry &quot;live&quot;'];
    const r = await capfilt('tokenize', '--model', clip, '--json', ...texts);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines).toHaveLength(2);
    lines.forEach((line, i) => {
      const ids = [goldens.sot, ...golden(texts[i]).ids, goldens.eot];
      expect(line).toEqual({ text: texts[i], ids, tokens: expect.any(Array), length: ids.length, truncated: false });
      expect(line.tokens[0]).toBe('<|startoftext|>');
      expect(line.tokens).toHaveLength(ids.length);
    });
    expect(lines[0].tokens.slice(1, -1)).toEqual(['a</w>', 'photo</w>', 'of</w>', 'a</w>', 'cat</w>']);
  });

  it('truncates to --context-length keeping the end-of-text token, and prints a table without --json', async () => {
    const r = await capfilt('tokenize', '--model', clip, '--json', '--context-length', '4', 'a photo of a cat');
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ ids: [goldens.sot, 320, 1125, goldens.eot], length: 4, truncated: true });
    const table = await capfilt('tokenize', '--model', clip, 'a photo of a cat');
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toContain('"a photo of a cat": 7 tokens');
    expect(table.stdout).toMatch(/\b1125\s+"photo<\/w>"/);
  });

  it('uses the BLIP tokenizer for a BLIP folder', async () => {
    const r = await capfilt('tokenize', '--model', blip, '--json', 'a cat');
    expect(r.code, r.stderr).toBe(0);
    const line = JSON.parse(r.stdout);
    expect(line.tokens[0]).toBe('[CLS]');
    expect(line.tokens.at(-1)).toBe('[SEP]');
    expect(line.length).toBe(line.ids.length);
  });

  it('fails with a coded error on a folder without a tokenizer, and a usage error on a bad --context-length', async () => {
    const r = await capfilt('tokenize', '--model', tmp, 'a cat');
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('MODEL_DIR_INVALID');
    const bad = await capfilt('tokenize', '--model', clip, '--context-length', '0', 'a cat');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('CLI_USAGE');
  });
});
