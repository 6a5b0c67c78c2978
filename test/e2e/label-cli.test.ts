import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli as capfilt } from '../helpers/cli.ts';
import { CLIP_SIZES, writeRandomClip } from '../../bench/random-clip.ts';

const repo = new URL('../../', import.meta.url).pathname;
const tmp = mkdtempSync(join(tmpdir(), 'capfilt-label-cli-'));
const model = join(tmp, 'clip');
const image = join(tmp, 'a.png');

beforeAll(() => {
  writeRandomClip(model, CLIP_SIZES.tiny);
  cpSync(join(repo, 'test/fixtures/parity/clip-t1/preprocess_0.png'), image);
  writeFileSync(join(tmp, 'bad.png'), 'not an image');
  writeFileSync(join(tmp, 'classes.txt'), 'circle\nsquare\ntriangle\n');
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('capfilt label', () => {
  it('prints top-k labels with probabilities for each image, with either template set', async () => {
    for (const templates of ['simple', 'imagenet']) {
      const r = await capfilt('label', '--model', model, '--labels', join(tmp, 'classes.txt'), '--templates', templates, '--top-k', '3', '--json', image);
      expect(r.code, r.stderr).toBe(0);
      const out = JSON.parse(r.stdout.trim());
      expect(out.ok).toBe(true);
      expect(out.labels.map((l: { label: string }) => l.label).sort()).toEqual(['circle', 'square', 'triangle']);
      expect(out.labels.reduce((s: number, l: { prob: number }) => s + l.prob, 0)).toBeCloseTo(1, 5);
    }
  });

  it('fails a bad image alone, with its code and exit status 1', async () => {
    const r = await capfilt('label', '--model', model, '--labels', join(tmp, 'classes.txt'), '--json', join(tmp, 'bad.png'), image);
    expect(r.code).toBe(1);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines[0]).toMatchObject({ ok: false, code: 'IMAGE_DECODE_FAILED' });
    expect(lines[1].ok).toBe(true);
  });

  it('refuses a --top-k beyond the number of classes as a usage error', async () => {
    const r = await capfilt('label', '--model', model, '--labels', join(tmp, 'classes.txt'), '--top-k', '9', image);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/CLI_USAGE/);
  });
});
