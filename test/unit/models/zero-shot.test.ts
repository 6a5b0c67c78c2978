import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLIP_SIZES, writeRandomClip } from '../../../bench/random-clip.ts';
import type { ClipEmbedder } from '../../../src/models/clip/embedder.ts';
import { loadClip } from '../../../src/models/clip/index.ts';
import { buildClassifier, classify, loadLabels, loadTemplates } from '../../../src/models/zero-shot.ts';

const tmp = mkdtempSync(join(tmpdir(), 'capfilt-zero-shot-'));
let embedder: ClipEmbedder;

beforeAll(async () => {
  writeRandomClip(join(tmp, 'clip'), CLIP_SIZES.tiny);
  embedder = (await loadClip(join(tmp, 'clip'), { device: 'cpu', threads: 1, precision: 'fp32' })).embedder;
});
afterAll(async () => {
  await embedder?.close();
  rmSync(tmp, { recursive: true, force: true });
});

const dot = (a: Float32Array, b: Float32Array) => a.reduce((s, x, i) => s + x * b[i], 0);

describe('prompt templates and labels', () => {
  it('has the simple template and the CLIP paper\'s 80 ImageNet templates', () => {
    expect(loadTemplates('simple')).toEqual(['a photo of a {}.']);
    const imagenet = loadTemplates('imagenet');
    expect(imagenet).toHaveLength(80);
    expect(new Set(imagenet).size).toBe(80);
    expect(imagenet).toContain('itap of a {}.');
    expect(imagenet.every((t) => t.includes('{}'))).toBe(true);
  });

  it('reads template and label files, refusing templates without {} and duplicate labels', () => {
    writeFileSync(join(tmp, 't.txt'), '# mine\na {} drawn in crayon\n\nthe {}\n');
    expect(loadTemplates(join(tmp, 't.txt'))).toEqual(['a {} drawn in crayon', 'the {}']);
    writeFileSync(join(tmp, 'bad.txt'), 'a photo\n');
    expect(() => loadTemplates(join(tmp, 'bad.txt'))).toThrow(/has no \{\}/);
    expect(() => loadTemplates(join(tmp, 'none.txt'))).toThrow(/neither simple nor imagenet/);
    writeFileSync(join(tmp, 'labels.txt'), 'cat\ndog\n\n# birds later\n');
    expect(loadLabels(join(tmp, 'labels.txt'))).toEqual(['cat', 'dog']);
    writeFileSync(join(tmp, 'dup.txt'), 'cat\ncat\n');
    expect(() => loadLabels(join(tmp, 'dup.txt'))).toThrow(/appears twice/);
  });
});

describe('zero-shot classifier', () => {
  it('averages the normalised prompt embeddings of each class and renormalises', async () => {
    const templates = ['a photo of a {}.', 'a drawing of the {}.', 'itap of my {}.'];
    const c = await buildClassifier(embedder, ['circle', 'square'], templates);
    for (const [i, label] of ['circle', 'square'].entries()) {
      const each = await embedder.embedTexts(templates.map((t) => t.replace('{}', label)));
      const mean = each[0].map((_, k) => each.reduce((s, e) => s + e[k], 0) / each.length);
      const n = Math.sqrt(mean.reduce((s, x) => s + x * x, 0));
      c.classEmbeddings[i].forEach((x, k) => expect(x).toBeCloseTo(mean[k] / n, 5));
      expect(dot(c.classEmbeddings[i], c.classEmbeddings[i])).toBeCloseTo(1, 5);
    }
  });

  it('gives softmax(logit_scale · cosine) over every class, best first', async () => {
    const labels = ['red circle', 'blue square', 'green triangle', 'a dog'];
    const c = await buildClassifier(embedder, labels, loadTemplates('simple'));
    const [img] = await embedder.embedImages([{ key: 'a', bytes: new Uint8Array(readFileSync(new URL('../../fixtures/parity/clip-t1/preprocess_0.png', import.meta.url))) }]);
    if (!img.ok) throw new Error(img.message);
    const all = classify(c, img.value, labels.length);
    expect(all.reduce((s, l) => s + l.prob, 0)).toBeCloseTo(1, 6);
    expect(all.map((l) => l.prob)).toEqual([...all.map((l) => l.prob)].sort((a, b) => b - a));
    const cos = c.classEmbeddings.map((e) => dot(e, img.value));
    const z = cos.map((x) => Math.exp(embedder.logitScale * x));
    for (const l of all) expect(l.prob).toBeCloseTo(z[labels.indexOf(l.label)] / z.reduce((a, b) => a + b, 0), 6);
    expect(classify(c, img.value, 2)).toEqual(all.slice(0, 2));
  });
});
