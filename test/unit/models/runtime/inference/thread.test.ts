import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLIP_SIZES, writeRandomClip } from '../../../../../bench/random-clip.ts';
import { isCapfiltError } from '../../../../../src/core/errors.ts';
import { loadBlip } from '../../../../../src/models/blip/index.ts';
import type { BlipModels } from '../../../../../src/models/blip/types.ts';
import { loadClip } from '../../../../../src/models/clip/index.ts';
import { openThreaded } from '../../../../../src/models/families.ts';
import type { Captioner, ImageTextEmbedder, ImageTextScorer } from '../../../../../src/models/roles.ts';
import type { InferenceThread } from '../../../../../src/models/runtime/inference/client.ts';
import type { GenerationOptions } from '../../../../../src/models/runtime/generation/types.ts';
import { t1ModelDir } from '../../../../helpers/t1-model.ts';

// The t1 parity checkpoints (tiny BLIP captioner + filter) with a tokenizer over their vocabulary,
// and a tiny random CLIP with OpenAI's vocabulary.
const fixtures = fileURLToPath(new URL('../../../../fixtures/parity/', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'capfilt-thread-'));
const blipDir = t1ModelDir();
const clipDir = join(dir, 'clip');
const runtime = { device: 'cpu', threads: 1, precision: 'fp32' as const };
const options: GenerationOptions = { method: 'greedy', maxLength: 12, minLength: 0, numBeams: 1, lengthPenalty: 1, topP: 1, topK: 0, temperature: 1, repetitionPenalty: 1, numReturnSequences: 1, prompt: '', seed: 0 };

let blipThread: InferenceThread;
let clipThread: InferenceThread;
let direct: BlipModels;
let directClip: ImageTextEmbedder;

beforeAll(async () => {
  writeRandomClip(clipDir, CLIP_SIZES.tiny);
  [blipThread, clipThread, direct, directClip] = await Promise.all([
    openThreaded(blipDir, runtime),
    openThreaded(clipDir, runtime),
    loadBlip(blipDir, runtime),
    loadClip(clipDir, runtime).then((c) => c.embedder),
  ]);
});

afterAll(async () => {
  await blipThread?.close();
  await clipThread?.close();
  await direct?.captioner?.close();
  await direct?.filter?.close();
  await directClip?.close();
  for (const d of [dir, blipDir]) rmSync(d, { recursive: true, force: true });
});

describe('inference thread', () => {
  const image = () => ({ key: 'k0', bytes: new Uint8Array(readFileSync(join(fixtures, 't1/preprocess_0.png'))) });

  it('serves BLIP roles with the same captions and scores as the runtime on the main thread', async () => {
    expect(Object.keys(blipThread.roles).sort()).toEqual(['captioner', 'imageTextScorer']);
    expect(blipThread.info).toEqual(direct.info);
    const captioner = blipThread.role<Captioner>('captioner')!;
    const [a, b] = [await captioner.caption([image()], options), await direct.captioner!.caption([image()], options)];
    expect(a).toEqual(b);
    expect(a[0].ok).toBe(true);
    const items = [{ image: image(), texts: ['a', 'b c'] }];
    expect(await blipThread.role<ImageTextScorer>('imageTextScorer')!.score(items)).toEqual(await direct.filter!.score(items));
    expect(blipThread.role('embedder')).toBeNull();
  });

  it('serves CLIP as the embedder, props included, with the same embeddings as the main thread', async () => {
    const e = clipThread.role<ImageTextEmbedder>('embedder')!;
    expect(e.dim).toBe(16);
    expect(e.logitScale).toBeCloseTo(directClip.logitScale, 6);
    expect(await e.embedTexts(['a photo of a cat', 'tom &amp; jerry'])).toEqual(await directClip.embedTexts(['a photo of a cat', 'tom &amp; jerry']));
    expect(await e.embedImages([image()])).toEqual(await directClip.embedImages([image()]));
  });

  it('returns per-image failures as values and keeps serving', async () => {
    const res = await blipThread.role<ImageTextScorer>('imageTextScorer')!.score([{ image: { key: 'bad', bytes: new Uint8Array([1, 2, 3]) }, texts: ['a'] }, { image: image(), texts: ['a'] }]);
    expect(res[0]).toMatchObject({ key: 'bad', ok: false, code: 'IMAGE_DECODE_FAILED' });
    expect(res[1].ok).toBe(true);
    const emb = await clipThread.role<ImageTextEmbedder>('embedder')!.embedImages([{ key: 'bad', bytes: new Uint8Array([1]) }, image()]);
    expect(emb.map((r) => r.ok)).toEqual([false, true]);
  });

  it('reports a model folder that cannot load as a coded error', async () => {
    const e = await openThreaded(join(dir, 'nope'), runtime).catch((x: unknown) => x);
    expect(isCapfiltError(e, 'MODEL_DIR_INVALID')).toBe(true);
    const broken = join(dir, 'broken-clip');
    cpSync(clipDir, broken, { recursive: true });
    rmSync(join(broken, 'model.safetensors'));
    const e2 = await openThreaded(broken, runtime).catch((x: unknown) => x);
    expect(isCapfiltError(e2, 'MODEL_DIR_INVALID')).toBe(true);
  });
});
