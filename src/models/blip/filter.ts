import { CapfiltError, describeError } from '../../core/errors.ts';
import { encodeImages } from './images.ts';
import { releaseModel, type LoadedModel } from './loader.ts';
import { f32, i64 } from '../runtime/sessions.ts';
import { Float32Pool } from '../runtime/buffers.ts';
import type { ImageTextScorer, TextScore } from '../roles.ts';
import type { ImageInput, PerImage } from '../runtime/types.ts';

/**
 * The filter (BlipForImageTextRetrieval) over the `vision` and `text_filter` graphs.
 * Each image is encoded once; its texts run as one group of rows against its embeddings
 * (images with the same number of texts share a text_filter run). Texts are tokenized as the
 * HF processor does: `[CLS] text [SEP]`, used as is (no `[ENC]` substitution), truncated to
 * the position table. Pixel batches and the image embeddings of each text_filter run come from
 * one pool, reused from call to call (runtime/buffers.ts says why).
 */

/** softmax([l0, l1])[1], computed stably. */
export function itmProbability(l0: number, l1: number): number {
  return 1 / (1 + Math.exp(l0 - l1));
}

export interface FilterLimits {
  /** Images per vision run. */
  imageBatch: number;
  /** Text rows per text_filter run (at least one image's texts always go together). */
  textRows: number;
}

export class BlipFilter implements ImageTextScorer {
  private readonly buffers = new Float32Pool();

  constructor(private readonly model: LoadedModel, private readonly limits: FilterLimits = { imageBatch: 8, textRows: 64 }) {
    if (!model.tokenizer) throw new CapfiltError('TOKENIZER_INVALID', `${model.dir}: the filter needs tokenizer.json or vocab.txt`, { dir: model.dir });
  }

  async score(items: { image: ImageInput; texts: string[] }[]): Promise<PerImage<TextScore[]>[]> {
    const results: PerImage<TextScore[]>[] = items.map((it) => ({ key: it.image.key, ok: false, code: 'INTERNAL', message: 'not scored' }));
    const encoded = await encodeImages(this.model, items.map((it) => it.image), this.limits.imageBatch, this.buffers);
    const { vision: dims } = this.model.cfg;
    const perImage = dims.seqLen * dims.hiddenSize;
    const D = this.model.cfg.projectionDim;
    // Group ready items by text count so every text_filter run has equal rows per image.
    const groups = new Map<number, number[]>();
    encoded.forEach((e, i) => {
      if (!e.ok) {
        results[i] = { key: items[i].image.key, ok: false, code: e.code, message: e.message };
        return;
      }
      const n = items[i].texts.length;
      if (n === 0) results[i] = { key: items[i].image.key, ok: true, value: [] };
      else groups.set(n, [...(groups.get(n) ?? []), i]);
    });
    for (const [count, members] of groups) {
      const perRun = Math.max(1, Math.floor(this.limits.textRows / count));
      for (let s = 0; s < members.length; s += perRun) {
        const chunk = members.slice(s, s + perRun);
        try {
          const texts = chunk.flatMap((i) => items[i].texts);
          const enc = this.model.tokenizer!.encodeBatch(texts, { maxLength: this.model.cfg.text.maxPositions });
          const embeds = this.buffers.take(chunk.length * perImage);
          chunk.forEach((i, k) => embeds.set((encoded[i] as { embeds: Float32Array }).embeds, k * perImage));
          let out;
          try {
            out = await this.model.sessions.text_filter.run({
              input_ids: i64(enc.ids.flat(), [texts.length, enc.length]),
              attention_mask: i64(enc.attentionMask.flat(), [texts.length, enc.length]),
              image_embeds: f32(embeds, [chunk.length, dims.seqLen, dims.hiddenSize]),
            }, ['itm_logits', 'text_feat']);
          } finally {
            this.buffers.give(embeds);
          }
          const logits = out.itm_logits.data as Float32Array;
          const feats = out.text_feat.data as Float32Array;
          chunk.forEach((i, k) => {
            const imageFeat = (encoded[i] as { feat: Float32Array }).feat;
            const scores = items[i].texts.map((text, j) => {
              const r = k * count + j;
              let itc = 0;
              for (let d = 0; d < D; d++) itc += imageFeat[d] * feats[r * D + d];
              return { text, itm: itmProbability(logits[2 * r], logits[2 * r + 1]), itc };
            });
            results[i] = { key: items[i].image.key, ok: true, value: scores };
          });
        } catch (e) {
          const { code, message } = describeError(e);
          for (const i of chunk) results[i] = { key: items[i].image.key, ok: false, code, message };
        }
      }
    }
    return results;
  }

  async close(): Promise<void> {
    this.buffers.clear();
    await releaseModel(this.model);
  }
}
