import type { Captioner } from '../../models/roles.ts';
import type { GenerationOptions } from '../../models/runtime/generation/types.ts';
import type { ImageInput } from '../../models/runtime/types.ts';
import type { CapfiltConfig } from '../../config/schema.ts';
import type { RowRecord } from '../../core/records.ts';
import type { StageRunContext } from './types.ts';
import type { ShardState } from '../../core/shard.ts';

/**
 * Caption stage: K synthetic captions per downloaded image with the BLIP captioner.
 * Input: records with `status: 'pending'`, `image.ref` in the staging store, not trusted
 * (human pairs are merged as given, as in the paper's bootstrapped dataset).
 * Receives config.caption and the captioner role (`ctx.model`).
 * Output: `captions: string[]` (K per image); an image the captioner cannot use fails alone
 * with the runtime's code. The rows of the shard are batched (`caption.batchSize` images per
 * call) so that the accelerator sees full batches.
 */
export function generationOptions(c: CapfiltConfig['caption']): GenerationOptions {
  return {
    method: c.method,
    maxLength: c.maxLength,
    minLength: c.minLength,
    numBeams: c.method === 'beam' ? c.numBeams : 1,
    lengthPenalty: c.lengthPenalty,
    topP: c.topP,
    topK: c.topK,
    temperature: c.temperature,
    repetitionPenalty: c.repetitionPenalty,
    numReturnSequences: c.k,
    prompt: c.prompt,
    seed: c.seed,
  };
}

export function captionable(r: RowRecord): boolean {
  return r.status === 'pending' && !r.trusted && r.image !== null;
}

export async function captionShard(state: ShardState, ctx: StageRunContext<'caption'> & { model: Captioner }): Promise<void> {
  const rows = state.records.filter(captionable);
  const options = generationOptions(ctx.config.caption);
  const size = ctx.config.caption.batchSize;
  for (let i = 0; i < rows.length; i += size) {
    ctx.signal.throwIfAborted();
    const batch = rows.slice(i, i + size);
    const images: ImageInput[] = await Promise.all(batch.map(async (r) => ({ key: r.key, bytes: await ctx.staging.getBlob(r.image!.ref) })));
    const results = await ctx.model.caption(images, options);
    batch.forEach((r, j) => {
      const res = results[j];
      if (res.ok) {
        r.captions = res.value;
      } else {
        r.status = 'failed';
        r.reason = res.code;
        r.reasonDetail = res.message;
      }
    });
  }
}
