/**
 * BlipCaptioner and BlipFilter reuse their buffers (pixel batches, image embeddings, decoder
 * caches) from call to call: results must not depend on what an earlier call left in them,
 * whether the next call is as large, smaller (a partial batch reuses a full batch's buffer) or
 * holds an image that fails to decode.
 */
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlipCaptioner } from '../../../../src/models/blip/captioner.ts';
import { BlipFilter } from '../../../../src/models/blip/filter.ts';
import { loadModel, releaseModel, type LoadedModel } from '../../../../src/models/blip/loader.ts';
import type { GenerationOptions } from '../../../../src/models/runtime/generation/types.ts';
import { t1ModelDir } from '../../../helpers/t1-model.ts';

const fixtures = fileURLToPath(new URL('../../../fixtures/', import.meta.url));
const dir = t1ModelDir();
const runtime = { device: 'cpu', threads: 1, precision: 'fp32' as const };
const options: GenerationOptions = { method: 'beam', maxLength: 10, minLength: 0, numBeams: 3, lengthPenalty: 1, topP: 1, topK: 0, temperature: 1, repetitionPenalty: 1, numReturnSequences: 2, prompt: '', seed: 0 };
const file = (name: string) => new Uint8Array(readFileSync(join(fixtures, name)));
const images = [
  { key: 'a', bytes: file('parity/t1/preprocess_0.png') },
  { key: 'b', bytes: file('parity/t1/preprocess_1.png') },
  { key: 'broken', bytes: file('images/broken.png') },
  { key: 'c', bytes: file('images/hopper.jpg') },
  { key: 'd', bytes: file('images/hopper.webp') },
];
let cap: LoadedModel;
let fil: LoadedModel;

beforeAll(async () => {
  [cap, fil] = await Promise.all([loadModel(join(dir, 'captioner'), runtime), loadModel(join(dir, 'filter'), runtime)]);
});

afterAll(async () => {
  await Promise.all([releaseModel(cap), releaseModel(fil)]);
  rmSync(dir, { recursive: true, force: true });
});

describe('buffer reuse across calls', () => {
  it('captioner: the same captions on a repeated call and on a smaller one, with a broken image among them', async () => {
    // Batches of 2: a call of 4 good images runs two full batches, a call of 1 a partial one.
    const captioner = new BlipCaptioner(cap, 2);
    const first = await captioner.caption(images, options);
    expect(first.find((r) => r.key === 'broken')).toMatchObject({ ok: false, code: expect.stringMatching(/^IMAGE_/) });
    expect(first.filter((r) => r.ok)).toHaveLength(4);
    expect(await captioner.caption(images, options)).toEqual(first);
    expect(await captioner.caption([images[4]], options)).toEqual([first[4]]);
    expect(await new BlipCaptioner(cap, 2).caption([images[4]], options)).toEqual([first[4]]);
  });

  it('filter: the same scores on a repeated call and on a smaller one', async () => {
    const filter = new BlipFilter(fil, { imageBatch: 2, textRows: 4 });
    const items = images.map((image, i) => ({ image, texts: ['a red circle', `text ${i}`] }));
    const first = await filter.score(items);
    expect(first.find((r) => r.key === 'broken')).toMatchObject({ ok: false });
    expect(await filter.score(items)).toEqual(first);
    expect(await filter.score([items[3]])).toEqual([first[3]]);
    expect(await new BlipFilter(fil, { imageBatch: 2, textRows: 4 }).score([items[3]])).toEqual([first[3]]);
  });
});
