import { cpSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli as capfilt } from '../helpers/cli.ts';
import { CLIP_SIZES, writeRandomClip } from '../../bench/random-clip.ts';
import { ROOT } from '../helpers/cli.ts';

/**
 * capfilt embed / clip-score / models convert|info on a tiny random CLIPModel (16-dim
 * embeddings, 32-pixel images, OpenAI's real vocabulary), as child processes.
 */

const images = join(ROOT, 'test/fixtures/images');
const hopper = join(images, 'hopper.jpg');
const gray = join(images, 'hopper_gray.jpg');
const corrupt = join(images, 'broken.png');
const tmp = mkdtempSync(join(tmpdir(), 'capfilt-clip-cli-'));
const hf = join(tmp, 'hf');
const converted = join(tmp, 'converted');
const int8 = join(tmp, 'int8');
const texts = ['a photo of a man in a hat', 'two dogs playing in the snow', 'a red circle above a blue square'];

interface Result { code: number; stdout: string; stderr: string }

interface EmbedJson {
  model: string;
  dim: number;
  logit_scale: number;
  images: ({ file: string; ok: true; embedding?: number[] } | { file: string; ok: false; code: string; message: string })[];
  texts: { text: string; embedding?: number[] }[];
  cosine: (number[] | null)[];
  logits_per_image: (number[] | null)[];
}

const dot = (a: number[], b: number[]): number => a.reduce((s, v, k) => s + v * b[k], 0);
const embedding = (e: EmbedJson['images'][number]): number[] => {
  if (!e.ok || !e.embedding) throw new Error(`${e.file}: no embedding`);
  return e.embedding;
};

const embedded = new Map<string, Promise<EmbedJson>>();

/** `embed --json` of the two images and three texts, run once per model folder. */
function embedJson(model: string): Promise<EmbedJson> {
  if (!embedded.has(model)) {
    embedded.set(model, capfilt('embed', '--model', model, '--json', hopper, gray, ...texts.flatMap((t) => ['--text', t])).then((r) => {
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as EmbedJson;
    }));
  }
  return embedded.get(model)!;
}

let conversions: Result[];

beforeAll(async () => {
  writeRandomClip(hf, CLIP_SIZES.tiny);
  conversions = await Promise.all([
    capfilt('models', 'convert', hf, converted),
    capfilt('models', 'convert', '--precision', 'int8', hf, int8),
  ]);
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('capfilt embed / clip-score / models on a tiny random CLIP', () => {
  it('embed --json: unit-norm embeddings, cosine = dot products, logits = scale × cosine; a corrupt image and a missing file fail alone', async () => {
    const missing = join(tmp, 'missing.jpg');
    const r = await capfilt('embed', '--model', hf, '--json', hopper, corrupt, gray, missing, ...texts.flatMap((t) => ['--text', t]));
    expect(r.code).toBe(1);
    const out = JSON.parse(r.stdout) as EmbedJson;
    expect(out).toMatchObject({ model: hf, dim: 16 });
    // writeRandomClip stores OpenAI's logit_scale parameter 4.6052: exp of it is 100.
    expect(out.logit_scale).toBeCloseTo(Math.exp(4.6052), 3);
    expect(out.images.map((im) => [im.file, im.ok])).toEqual([[hopper, true], [corrupt, false], [gray, true], [missing, false]]);
    expect(out.images[1]).toMatchObject({ code: 'IMAGE_DECODE_FAILED' });
    expect(out.images[1]).not.toHaveProperty('embedding');
    expect(out.images[3]).toMatchObject({ code: 'INPUT_UNREADABLE' });
    expect(out.texts.map((t) => t.text)).toEqual(texts);
    const vectors = [embedding(out.images[0]), embedding(out.images[2]), ...out.texts.map((t) => t.embedding!)];
    for (const v of vectors) {
      expect(v).toHaveLength(16);
      expect(Math.sqrt(dot(v, v))).toBeCloseTo(1, 5);
    }
    expect(out.cosine).toHaveLength(4);
    expect(out.cosine[1]).toBeNull();
    expect(out.cosine[3]).toBeNull();
    expect(out.logits_per_image[1]).toBeNull();
    for (const i of [0, 2]) {
      expect(out.cosine[i]).toHaveLength(texts.length);
      out.texts.forEach((t, j) => {
        expect(out.cosine[i]![j]).toBeCloseTo(dot(embedding(out.images[i]), t.embedding!), 12);
        expect(out.logits_per_image[i]![j]).toBeCloseTo(out.logit_scale * out.cosine[i]![j], 10);
      });
    }
  });

  it('embed --no-embeddings prints only the matrices; the human form is a cosine table', async () => {
    const bare = await capfilt('embed', '--model', hf, '--json', '--no-embeddings', hopper, '--text', texts[0], '--text', texts[1]);
    expect(bare.code, bare.stderr).toBe(0);
    const out = JSON.parse(bare.stdout) as EmbedJson;
    expect(out.images).toEqual([{ file: hopper, ok: true }]);
    expect(out.texts).toEqual([{ text: texts[0] }, { text: texts[1] }]);
    expect(out.cosine[0]).toHaveLength(2);

    const human = await capfilt('embed', '--model', hf, hopper, corrupt, '--text', texts[0], '--text', texts[1], '--batch-size', '1');
    expect(human.code).toBe(1);
    const lines = human.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/16-dim embeddings, logit scale 100\.00/);
    expect(lines[1]).toBe('cosine [image × text]');
    // Column headers are the texts, cut at 24 characters.
    expect(lines[2].trim().split(/\s{2,}/)).toEqual(['a photo of a man in a h…', 'two dogs playing in the…']);
    expect(lines[3]).toMatch(/^hopper\.jpg\s+-?\d\.\d{4}\s+-?\d\.\d{4}$/);
    expect(lines[4]).toMatch(/^broken\.png\s+failed: IMAGE_DECODE_FAILED$/);
    expect(human.stderr).toContain(`${corrupt}: `);

    const usage = await capfilt('embed', '--model', hf);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/at least one image file or --text/);
  });

  it('clip-score --json gives embed\'s cosines and their logits; a corrupt image fails with its code', async () => {
    const [r, e] = await Promise.all([capfilt('clip-score', '--model', hf, '--json', hopper, ...texts), embedJson(hf)]);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { image: string; ok: boolean; scores: { text: string; cosine: number; logit: number }[] };
    expect(out).toMatchObject({ image: hopper, ok: true });
    expect(out.scores.map((s) => s.text)).toEqual(texts);
    out.scores.forEach((s, j) => {
      expect(s.cosine).toBeCloseTo(e.cosine[0]![j], 6);
      expect(s.logit).toBeCloseTo(e.logit_scale * s.cosine, 8);
    });

    const human = await capfilt('clip-score', '--model', hf, hopper, texts[0], texts[1]);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toBe(`cosine=${out.scores[0].cosine.toFixed(4)}\t${texts[0]}\ncosine=${out.scores[1].cosine.toFixed(4)}\t${texts[1]}\n`);

    const bad = await capfilt('clip-score', '--model', hf, '--json', corrupt, texts[0]);
    expect(bad.code).toBe(1);
    expect(JSON.parse(bad.stdout)).toMatchObject({ image: corrupt, ok: false, code: 'IMAGE_DECODE_FAILED' });
  });

  it('models convert writes one converted CLIP folder, whose embeddings equal the Hugging Face folder\'s within 1e-5', async () => {
    const [fp32] = conversions;
    expect(fp32.code, fp32.stderr).toBe(0);
    expect(fp32.stdout).toContain(`CLIPModel → ${converted} (vision, text; fp32)`);
    expect(readdirSync(converted).sort()).toEqual(['config.json', 'manifest.json', 'merges.txt', 'preprocessor_config.json', 'special_tokens_map.json', 'text.onnx', 'text.onnx.data', 'tokenizer_config.json', 'vision.onnx', 'vision.onnx.data', 'vocab.json']);
    expect(existsSync(join(converted, 'captioner'))).toBe(false);
    const [a, b] = await Promise.all([embedJson(hf), embedJson(converted)]);
    expect(b.dim).toBe(a.dim);
    expect(b.logit_scale).toBeCloseTo(a.logit_scale, 5);
    const flat = (e: EmbedJson) => [...e.images.flatMap(embedding), ...e.texts.flatMap((t) => t.embedding!), ...e.cosine.flatMap((row) => row!)];
    const [x, y] = [flat(a), flat(b)];
    expect(y).toHaveLength(x.length);
    expect(Math.max(...x.map((v, k) => Math.abs(v - y[k])))).toBeLessThan(1e-5);
  });

  it('embed loads only the towers its inputs need', async () => {
    const visionOnly = join(tmp, 'vision-only');
    const textOnly = join(tmp, 'text-only');
    cpSync(converted, visionOnly, { recursive: true });
    cpSync(converted, textOnly, { recursive: true });
    rmSync(join(visionOnly, 'text.onnx'));
    rmSync(join(textOnly, 'vision.onnx'));
    const [images, words, both] = await Promise.all([
      capfilt('embed', '--model', visionOnly, '--json', hopper),
      capfilt('embed', '--model', textOnly, '--json', '--text', texts[0]),
      capfilt('clip-score', '--model', textOnly, hopper, texts[0]),
    ]);
    expect(images.code, images.stderr).toBe(0);
    expect(JSON.parse(images.stdout)).toMatchObject({ texts: [], cosine: [[]] });
    expect(words.code, words.stderr).toBe(0);
    expect(JSON.parse(words.stdout)).toMatchObject({ images: [], cosine: [] });
    expect(both.code).toBe(1);
    expect(both.stderr).toMatch(/MODEL_DIR_INVALID|graph vision is missing/);
  });

  it('models info describes the Hugging Face and the converted folder', async () => {
    const [a, b] = await Promise.all([capfilt('models', 'info', hf), capfilt('models', 'info', converted)]);
    expect(a.code, a.stderr).toBe(0);
    expect(b.code, b.stderr).toBe(0);
    const [h, c] = [JSON.parse(a.stdout), JSON.parse(b.stdout)];
    for (const info of [h, c]) {
      expect(info).toMatchObject({
        architecture: 'CLIPModel',
        projectionDim: 16,
        text: { hiddenSize: 32, layers: 2, heads: 4, vocabSize: 49408, maxPositions: 77, pooling: 'first-eos', activation: 'quick_gelu' },
        vision: { hiddenSize: 32, layers: 2, imageSize: 32, patchSize: 8, seqLen: 17, activation: 'quick_gelu' },
        tokenizer: ['vocab.json', 'merges.txt'],
      });
    }
    expect(h).toMatchObject({ dir: hf, format: 'huggingface', weights: { file: join(hf, 'model.safetensors') } });
    expect(h).not.toHaveProperty('logitScale');
    expect(c).toMatchObject({ dir: converted, format: 'converted', precision: 'fp32', graphs: { vision: { model: 'vision.onnx' }, text: { model: 'text.onnx' } } });
    expect(c.logitScale).toBeCloseTo(Math.exp(4.6052), 3);
    expect(c.source.files['model.safetensors']).toMatch(/^[0-9a-f]{64}$/);
  });

  it('an int8 conversion agrees with fp32: embedding cosine ≥ 0.999, CLIP scores within 0.01', async () => {
    const [, q] = conversions;
    expect(q.code, q.stderr).toBe(0);
    expect(q.stdout).toContain(`CLIPModel → ${int8} (vision, text; int8)`);
    const info = await capfilt('models', 'info', int8);
    expect(JSON.parse(info.stdout)).toMatchObject({ format: 'converted', precision: 'int8' });
    const [a, b] = await Promise.all([embedJson(converted), embedJson(int8)]);
    const pairs: [number[], number[]][] = [
      ...a.images.map((im, i): [number[], number[]] => [embedding(im), embedding(b.images[i])]),
      ...a.texts.map((t, j): [number[], number[]] => [t.embedding!, b.texts[j].embedding!]),
    ];
    // Measured on this model: 0.99997–0.99998 for every image and text.
    const agreement = Math.min(...pairs.map(([x, y]) => dot(x, y)));
    expect(agreement).toBeGreaterThanOrEqual(0.999);
    const drift = Math.max(...a.cosine.flatMap((row, i) => row!.map((c, j) => Math.abs(c - b.cosine[i]![j]))));
    expect(drift).toBeLessThan(0.01);
  });
});
