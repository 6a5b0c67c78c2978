import { CapfiltError, describeError } from '../../core/errors.ts';
import { OrtDecoderSession } from './decoder-session.ts';
import { generate, generatedIds } from '../runtime/generation/index.ts';
import { promptPrefix } from './prompt.ts';
import { encodeImages } from './images.ts';
import { releaseModel, type LoadedModel } from './loader.ts';
import { f32 } from '../runtime/sessions.ts';
import { Float32Pool } from '../runtime/buffers.ts';
import type { Captioner } from '../roles.ts';
import type { GenerationOptions } from '../runtime/generation/types.ts';
import type { ImageInput, PerImage } from '../runtime/types.ts';

/**
 * The captioner (BlipForConditionalGeneration) over the `vision`, `cross_kv` and `decoder`
 * graphs. As HF's BLIP generate: the prompt is tokenized without specials and prefixed with
 * `[DEC]` (the processor's `[CLS] prompt [SEP]` with the first id replaced by bos and the last
 * dropped); captions are the decoded ids after that prefix, so the prompt is stripped.
 *
 * Pixel batches, the image embeddings fed to `cross_kv` and the decoder caches draw their buffers
 * from one pool, so each batch reuses the last one's memory (runtime/buffers.ts says why).
 */
export class BlipCaptioner implements Captioner {
  private readonly buffers = new Float32Pool();

  constructor(private readonly model: LoadedModel, private readonly batch = 8) {
    if (!model.tokenizer) throw new CapfiltError('TOKENIZER_INVALID', `${model.dir}: the captioner needs tokenizer.json or vocab.txt`, { dir: model.dir });
  }

  /** The decoder prefix for `prompt`: [bos, prompt ids…]. */
  prefixFor(prompt: string): number[] {
    return promptPrefix(this.model.tokenizer!.encode(prompt), this.model.special.bos);
  }

  async caption(images: ImageInput[], options: GenerationOptions): Promise<PerImage<string[]>[]> {
    const m = this.model;
    const results: PerImage<string[]>[] = images.map((im) => ({ key: im.key, ok: false, code: 'INTERNAL', message: 'not captioned' }));
    const encoded = await encodeImages(m, images, this.batch, this.buffers);
    const ready: number[] = [];
    encoded.forEach((e, i) => {
      if (e.ok) ready.push(i);
      else results[i] = { key: images[i].key, ok: false, code: e.code, message: e.message };
    });
    const prefix = this.prefixFor(options.prompt);
    const { seqLen, hiddenSize } = m.cfg.vision;
    const perImage = seqLen * hiddenSize;
    for (let s = 0; s < ready.length; s += this.batch) {
      const chunk = ready.slice(s, s + this.batch);
      let session: OrtDecoderSession | undefined;
      try {
        const embeds = this.buffers.take(chunk.length * perImage);
        chunk.forEach((i, k) => embeds.set((encoded[i] as { embeds: Float32Array }).embeds, k * perImage));
        try {
          session = await OrtDecoderSession.open(m.cfg, m.sessions.cross_kv, m.sessions.decoder, f32(embeds, [chunk.length, seqLen, hiddenSize]), this.buffers, m.rowGraphs);
        } finally {
          this.buffers.give(embeds);
        }
        const seqs = await generate(session, chunk.map(() => prefix), options, m.special, chunk.map((i) => images[i].key));
        chunk.forEach((i, k) => {
          const captions = seqs[k].map((ids) => m.tokenizer!.decode(generatedIds(ids, prefix.length, m.special.eos)).trim());
          results[i] = { key: images[i].key, ok: true, value: captions };
        });
      } catch (e) {
        const { code, message } = describeError(e);
        for (const i of chunk) results[i] = { key: images[i].key, ok: false, code, message };
      } finally {
        session?.close();
      }
    }
    return results;
  }

  async close(): Promise<void> {
    this.buffers.clear();
    await releaseModel(this.model);
  }
}
