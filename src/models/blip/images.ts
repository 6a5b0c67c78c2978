import { describeError } from '../../core/errors.ts';
import type { LoadedModel } from './loader.ts';
import type { Float32Pool } from '../runtime/buffers.ts';
import { decodeImages, pixelValuesInto } from '../runtime/preprocess.ts';
import { f32 } from '../runtime/sessions.ts';
import type { ImageInput } from '../runtime/types.ts';

/**
 * Image bytes → vision encoder outputs, per image. Images that fail to decode get their error
 * and are left out of the vision batches; a failing vision run fails only its own batch.
 *
 * A batch's pixels are written straight into a buffer from `pool` (no whole-call pixel array)
 * and go back once its run is done. The per-image `embeds` and `feat` are views of the batch's
 * outputs, not copies: onnxruntime-node already hands every output over in a fresh buffer.
 */
export type EncodedImage =
  | { ok: true; embeds: Float32Array; feat: Float32Array | null }
  | { ok: false; code: string; message: string };

export async function encodeImages(model: LoadedModel, images: ImageInput[], batch: number, pool: Float32Pool): Promise<EncodedImage[]> {
  const { vision, projectionDim: D } = model.cfg;
  const S = vision.imageSize;
  const plane = 3 * S * S;
  const perImage = vision.seqLen * vision.hiddenSize;
  const decoded = await decodeImages(images.map((im) => im.bytes));
  const out: EncodedImage[] = decoded.map((d) => ('code' in d ? { ok: false, code: d.code, message: d.message } : { ok: false, code: 'INTERNAL', message: 'not encoded' }));
  const good = decoded.flatMap((d, i) => ('code' in d ? [] : [i]));
  for (let s = 0; s < good.length; s += batch) {
    const chunk = good.slice(s, s + batch);
    const px = pool.take(chunk.length * plane);
    try {
      chunk.forEach((i, k) => {
        const d = decoded[i];
        if (!('code' in d)) pixelValuesInto(d, model.pre, px.subarray(k * plane, (k + 1) * plane));
      });
      const res = await model.sessions.vision.run({ pixel_values: f32(px, [chunk.length, 3, S, S]) });
      const embeds = res.last_hidden_state.data as Float32Array;
      const feat = (res.image_feat?.data as Float32Array | undefined) ?? null;
      chunk.forEach((i, k) => {
        out[i] = { ok: true, embeds: embeds.subarray(k * perImage, (k + 1) * perImage), feat: feat ? feat.subarray(k * D, (k + 1) * D) : null };
      });
    } catch (e) {
      const { code, message } = describeError(e);
      for (const i of chunk) out[i] = { ok: false, code, message };
    } finally {
      pool.give(px);
    }
  }
  return out;
}
