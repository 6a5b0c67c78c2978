import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli as capfilt } from '../helpers/cli.ts';
import { t1ModelDir } from '../helpers/t1-model.ts';
import { readEntries, writeShardedSafetensors } from '../helpers/safetensors-writer.ts';

const repo = new URL('../../', import.meta.url).pathname;
const fixtures = join(repo, 'test/fixtures/parity');
const tmp = mkdtempSync(join(tmpdir(), 'capfilt-blip-cli-'));
const hf = join(tmp, 'hf');
const converted = join(tmp, 'converted');
const image = join(fixtures, 't1/preprocess_0.png');

beforeAll(() => {
  // The t1 parity checkpoints with a tokenizer over their 96-id vocabulary.
  t1ModelDir(hf);
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('capfilt models / caption / score on the t1 checkpoints', () => {
  it('converts both models and describes the result', async () => {
    const r = await capfilt('models', 'convert', hf, converted);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('captioner: BlipForConditionalGeneration');
    expect(readdirSync(join(converted, 'captioner')).sort()).toEqual(expect.arrayContaining(['manifest.json', 'vision.onnx', 'vision.onnx.data', 'decoder.onnx', 'cross_kv.onnx', 'vocab.txt', 'preprocessor_config.json']));
    const manifest = JSON.parse(readFileSync(join(converted, 'filter/manifest.json'), 'utf8'));
    expect(manifest.source.files['model.safetensors']).toMatch(/^[0-9a-f]{64}$/);
    expect(manifest.precision).toBe('fp32');
    const info = await capfilt('models', 'info', converted);
    expect(info.code, info.stderr).toBe(0);
    const parsed = JSON.parse(info.stdout);
    expect(parsed.captioner.format).toBe('converted');
    expect(parsed.filter.architecture).toBe('BlipForImageTextRetrieval');
  });

  it('captions with --json; a file that is not an image fails alone', async () => {
    const bad = join(tmp, 'not-an-image.jpg');
    writeFileSync(bad, 'hello');
    const r = await capfilt('caption', '--model', converted, '--json', '--max-length', '12', '--min-length', '0', image, bad);
    expect(r.code).toBe(1);
    const out = JSON.parse(r.stdout);
    expect(out[0]).toMatchObject({ image, ok: true });
    expect(out[0].captions).toHaveLength(1);
    expect(typeof out[0].captions[0]).toBe('string');
    expect(out[1]).toMatchObject({ image: bad, ok: false, code: 'IMAGE_DECODE_FAILED' });
  });

  it('gives K reproducible nucleus captions and beam captions from an HF folder', async () => {
    const args = ['caption', '--model', hf, '--json', '--method', 'nucleus', '-k', '2', '--seed', '7', '--max-length', '10', '--min-length', '0', image];
    const a = await capfilt(...args);
    expect(a.code, a.stderr).toBe(0);
    const b = await capfilt(...args);
    expect(JSON.parse(a.stdout)[0].captions).toHaveLength(2);
    expect(JSON.parse(b.stdout)).toEqual(JSON.parse(a.stdout));
    const beam = await capfilt('caption', '--model', join(converted, 'captioner'), '--json', '--method', 'beam', '--num-beams', '3', '--max-length', '10', '--min-length', '0', image);
    expect(beam.code, beam.stderr).toBe(0);
    expect(JSON.parse(beam.stdout)[0].ok).toBe(true);
  });

  it('captions and converts from a sharded checkpoint as from the single file; the manifest hashes every shard', async () => {
    const sharded = join(tmp, 'sharded-captioner');
    cpSync(join(hf, 'captioner'), sharded, { recursive: true });
    const entries = readEntries(join(sharded, 'model.safetensors'));
    rmSync(join(sharded, 'model.safetensors'));
    writeShardedSafetensors(sharded, entries, 2);
    const args = (model: string) => ['caption', '--model', model, '--json', '--method', 'nucleus', '-k', '3', '--seed', '3', '--max-length', '10', '--min-length', '0', image];
    const a = await capfilt(...args(sharded));
    expect(a.code, a.stderr).toBe(0);
    const b = await capfilt(...args(join(hf, 'captioner')));
    expect(JSON.parse(a.stdout)).toEqual(JSON.parse(b.stdout));
    const out = join(tmp, 'sharded-converted');
    const c = await capfilt('models', 'convert', sharded, out);
    expect(c.code, c.stderr).toBe(0);
    const files = JSON.parse(readFileSync(join(out, 'captioner/manifest.json'), 'utf8')).source.files;
    for (const f of ['model.safetensors.index.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']) expect(files[f]).toMatch(/^[0-9a-f]{64}$/);
  });

  it('scores texts with ITM probabilities and ITC cosines', async () => {
    const r = await capfilt('score', '--model', converted, '--json', image, 'a red circle', 'two dogs on the beach');
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.scores.map((s: { text: string }) => s.text)).toEqual(['a red circle', 'two dogs on the beach']);
    for (const s of out.scores) {
      expect(s.itm).toBeGreaterThan(0);
      expect(s.itm).toBeLessThan(1);
      expect(Math.abs(s.itc)).toBeLessThanOrEqual(1);
    }
    const hfScores = JSON.parse((await capfilt('score', '--model', join(hf, 'filter'), '--json', image, 'a red circle', 'two dogs on the beach')).stdout);
    hfScores.scores.forEach((s: { itm: number; itc: number }, i: number) => {
      expect(s.itm).toBeCloseTo(out.scores[i].itm, 5);
      expect(s.itc).toBeCloseTo(out.scores[i].itc, 5);
    });
  });

  it('fails with a coded error on a folder without a model and on bad flags', async () => {
    const r = await capfilt('score', '--model', tmp, image, 'x');
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('MODEL_DIR_INVALID');
    const flags = await capfilt('caption', '--model', converted, '--method', 'sideways', image);
    expect(flags.code).toBe(2);
    expect(flags.stderr).toContain('--method');
  });
});
