import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { OrtDecoderSession } from '../../../../src/models/blip/decoder-session.ts';
import { generate } from '../../../../src/models/runtime/generation/index.ts';
import { encodeImages } from '../../../../src/models/blip/images.ts';
import { loadBlip } from '../../../../src/models/blip/index.ts';
import { loadModel, releaseModel } from '../../../../src/models/blip/loader.ts';
import { f32 } from '../../../../src/models/runtime/sessions.ts';
import { Float32Pool } from '../../../../src/models/runtime/buffers.ts';

/**
 * Golden values of the released base checkpoints on the BLIP demo image (DESIGN.md). Runs only
 * when CAPFILT_REAL_MODELS names a folder holding captioner/ (blip-image-captioning-base),
 * filter/ (blip-itm-base-coco) and demo.jpg; the weights cannot be downloaded everywhere.
 */
const root = process.env.CAPFILT_REAL_MODELS;
const ready = !!root && ['captioner', 'filter', 'demo.jpg'].every((p) => existsSync(join(root, p)));
if (!ready) console.log('real-models test skipped: set CAPFILT_REAL_MODELS to a folder with captioner/, filter/ and demo.jpg');

describe.skipIf(!ready)('released BLIP base checkpoints (CAPFILT_REAL_MODELS)', () => {
  const opts = { device: 'cpu', threads: 0, precision: 'fp32' as const };
  const text = 'A picture of a woman with a dog sitting in a beach';

  it('captions the demo image with the golden greedy ids', async () => {
    const cap = await loadModel(join(root!, 'captioner'), opts);
    const [enc] = await encodeImages(cap, [{ key: 'demo', bytes: readFileSync(join(root!, 'demo.jpg')) }], 1, new Float32Pool());
    if (!enc.ok) throw new Error(enc.message);
    const { seqLen, hiddenSize } = cap.cfg.vision;
    const session = await OrtDecoderSession.open(cap.cfg, cap.sessions.cross_kv, cap.sessions.decoder, f32(enc.embeds, [1, seqLen, hiddenSize]));
    const options = { method: 'greedy' as const, maxLength: 20, minLength: 0, numBeams: 1, lengthPenalty: 1, topP: 1, topK: 0, temperature: 1, repetitionPenalty: 1, numReturnSequences: 1, prompt: '', seed: 0 };
    const [[ids]] = await generate(session, [[cap.special.bos]], options, cap.special, ['demo']);
    expect(ids).toEqual([30522, 1037, 2450, 3564, 2006, 1996, 3509, 2007, 2014, 3899, 102]);
    await releaseModel(cap);
  });

  it('scores the demo text with the golden ITM probability and ITC cosine', async () => {
    const models = await loadBlip(root!, opts);
    const [r] = await models.filter!.score([{ image: { key: 'demo', bytes: readFileSync(join(root!, 'demo.jpg')) }, texts: [text] }]);
    if (!r.ok) throw new Error(r.message);
    // Preprocessing is approximate (resampler), so a few 1e-3 of slack.
    expect(r.value[0].itc).toBeCloseTo(0.2110687494277954, 2);
    expect(r.value[0].itm).toBeCloseTo(0.45698845386505127, 2);
    await models.filter!.close();
    await models.captioner?.close();
  });
});
