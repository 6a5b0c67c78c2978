import { CapfiltError, describeError } from '../../core/errors.ts';
import type { ImageTextEmbedder } from '../roles.ts';
import { decodeImages, pixelValuesOf, type DecodedRgb } from '../runtime/preprocess.ts';
import { f32, i64 } from '../runtime/sessions.ts';
import type { ImageInput, PerImage } from '../runtime/types.ts';
import type { LoadedClip } from './loader.ts';
import { releaseClip } from './loader.ts';

/**
 * CLIP as the image-text embedder role: images → normalised image embeddings (vision tower
 * only), texts → normalised text embeddings (text tower only, each batch padded to its longest
 * text, never to 77). Both are chunked so the session sees at most `batch` rows at once.
 */
export interface ClipBatchSizes {
  images: number;
  texts: number;
}

export const DEFAULT_CLIP_BATCH: ClipBatchSizes = { images: 32, texts: 256 };

export class ClipEmbedder implements ImageTextEmbedder {
  constructor(
    private readonly model: LoadedClip,
    private readonly batch: ClipBatchSizes = DEFAULT_CLIP_BATCH,
  ) {}

  get dim(): number {
    return this.model.cfg.projectionDim;
  }

  get logitScale(): number {
    return Math.exp(this.model.logitScale);
  }

  async embedImages(images: ImageInput[]): Promise<PerImage<Float32Array>[]> {
    const decoded = await decodeImages(images.map((im) => im.bytes));
    return this.embedDecoded(images.map((im) => im.key), decoded);
  }

  /** Embeds images already decoded for another model, so an image is decoded once per row. */
  async embedDecoded(keys: string[], decoded: (DecodedRgb | { code: string; message: string })[]): Promise<PerImage<Float32Array>[]> {
    const vision = this.model.sessions.vision;
    if (!vision) throw new CapfiltError('MODEL_DIR_INVALID', `${this.model.dir}: the CLIP vision tower was not loaded`, { dir: this.model.dir });
    const S = this.model.cfg.vision.imageSize;
    const D = this.dim;
    const out: PerImage<Float32Array>[] = keys.map((key, i) => {
      const d = decoded[i];
      return 'code' in d ? { key, ok: false, code: d.code, message: d.message } : { key, ok: false, code: 'INTERNAL', message: 'not embedded' };
    });
    const good = decoded.flatMap((d, i) => ('code' in d ? [] : [i]));
    for (let s = 0; s < good.length; s += this.batch.images) {
      const chunk = good.slice(s, s + this.batch.images);
      try {
        const { pixelValues } = pixelValuesOf(chunk.map((i) => decoded[i]), this.model.pre);
        const res = await vision.run({ pixel_values: f32(pixelValues, [chunk.length, 3, S, S]) }, ['image_embeds']);
        const emb = res.image_embeds.data as Float32Array;
        chunk.forEach((i, k) => {
          out[i] = { key: keys[i], ok: true, value: emb.slice(k * D, (k + 1) * D) };
        });
      } catch (e) {
        const { code, message } = describeError(e);
        for (const i of chunk) out[i] = { key: keys[i], ok: false, code, message };
      }
    }
    return out;
  }

  async embedTexts(texts: string[]): Promise<Float32Array[]> {
    const text = this.model.sessions.text;
    const tok = this.model.tokenizer;
    if (!text) throw new CapfiltError('MODEL_DIR_INVALID', `${this.model.dir}: the CLIP text tower was not loaded`, { dir: this.model.dir });
    if (!tok) throw new CapfiltError('TOKENIZER_INVALID', `${this.model.dir}: no CLIP tokenizer (tokenizer.json, or vocab.json + merges.txt)`, { dir: this.model.dir });
    const contextLength = Math.min(this.model.cfg.text.maxPositions, tok.contextLength);
    const D = this.dim;
    const out: Float32Array[] = [];
    for (let s = 0; s < texts.length; s += this.batch.texts) {
      const chunk = texts.slice(s, s + this.batch.texts);
      const enc = tok.encodeBatch(chunk, { contextLength, padTo: 'longest' });
      const res = await text.run({
        input_ids: i64(enc.ids.flat(), [chunk.length, enc.length]),
        attention_mask: i64(enc.attentionMask.flat(), [chunk.length, enc.length]),
      }, ['text_embeds']);
      const emb = res.text_embeds.data as Float32Array;
      for (let k = 0; k < chunk.length; k++) out.push(emb.slice(k * D, (k + 1) * D));
    }
    return out;
  }

  async close(): Promise<void> {
    await releaseClip(this.model);
  }
}

/** Cosine matrix [images][texts] of normalised embeddings. */
export function cosineMatrix(images: Float32Array[], texts: Float32Array[]): number[][] {
  return images.map((a) => texts.map((b) => {
    let s = 0;
    for (let k = 0; k < a.length; k++) s += a[k] * b[k];
    return s;
  }));
}
