import { describeError } from '../../core/errors.ts';
import type { LoadedModel } from './loader.ts';
import { preprocessImages } from '../runtime/preprocess.ts';
import { f32 } from '../runtime/sessions.ts';
import type { ImageInput } from '../runtime/types.ts';

/**
 * Image bytes → vision encoder outputs, per image. Images that fail to decode get their error
 * and are left out of the vision batches; a failing vision run fails only its own batch.
 */
export type EncodedImage =
  | { ok: true; embeds: Float32Array; feat: Float32Array | null }
  | { ok: false; code: string; message: string };

export async function encodeImages(model: LoadedModel, images: ImageInput[], batch: number): Promise<EncodedImage[]> {
  const { vision } = model.cfg;
  const S = vision.imageSize;
  const plane = 3 * S * S;
  const perImage = vision.seqLen * vision.hiddenSize;
  const pre = await preprocessImages(images.map((im) => im.bytes), model.pre);
  const out: EncodedImage[] = pre.errors.map((e) => (e ? { ok: false, code: e.code, message: `${e.message}` } : { ok: false, code: 'INTERNAL', message: 'not encoded' }));
  const good = pre.errors.flatMap((e, i) => (e ? [] : [i]));
  for (let s = 0; s < good.length; s += batch) {
    const chunk = good.slice(s, s + batch);
    try {
      const px = new Float32Array(chunk.length * plane);
      chunk.forEach((i, k) => px.set(pre.pixelValues.subarray(i * plane, (i + 1) * plane), k * plane));
      const res = await model.sessions.vision.run({ pixel_values: f32(px, [chunk.length, 3, S, S]) });
      const embeds = res.last_hidden_state.data as Float32Array;
      const feat = res.image_feat?.data as Float32Array | undefined;
      const D = model.cfg.projectionDim;
      chunk.forEach((i, k) => {
        out[i] = { ok: true, embeds: embeds.slice(k * perImage, (k + 1) * perImage), feat: feat ? feat.slice(k * D, (k + 1) * D) : null };
      });
    } catch (e) {
      const { code, message } = describeError(e);
      for (const i of chunk) out[i] = { ok: false, code, message };
    }
  }
  return out;
}
