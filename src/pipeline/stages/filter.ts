import type { ImageTextScorer } from '../../models/roles.ts';
import type { ImageInput } from '../../models/runtime/types.ts';
import { decideRow } from '../decisions.ts';
import type { RowRecord, ScoredText } from '../../core/records.ts';
import type { StageRunContext } from './types.ts';
import type { ShardState } from '../../core/shard.ts';

/**
 * Filter stage: scores the web text and every synthetic caption of each image with the BLIP
 * filter (ITM P(match) and ITC cosine) and decides the row (src/pipeline/decisions.ts).
 * Input: pending, non-trusted records with a staged image; `text` and `captions`.
 * Output: `scores` (one per text, web first, with `kept`), `selected`, and the final status
 * `kept`/`filtered` with a decision reason; an image the filter cannot use fails alone.
 * Batches hold up to `filter.batchSize` image-text pairs; each image is encoded once.
 * Receives config.filter, config.caption (keepTop) and the image-text scorer role (`ctx.model`).
 */
export function textsOf(r: RowRecord): { text: string; source: ScoredText['source'] }[] {
  const texts: { text: string; source: ScoredText['source'] }[] = [];
  if (r.text !== null && r.text.trim() !== '') texts.push({ text: r.text, source: 'web' });
  for (const c of r.captions) texts.push({ text: c, source: 'synthetic' });
  return texts;
}

function batches(rows: RowRecord[], pairsPerBatch: number): RowRecord[][] {
  const out: RowRecord[][] = [];
  let cur: RowRecord[] = [];
  let pairs = 0;
  for (const r of rows) {
    const n = Math.max(1, textsOf(r).length);
    if (cur.length && pairs + n > pairsPerBatch) {
      out.push(cur);
      cur = [];
      pairs = 0;
    }
    cur.push(r);
    pairs += n;
  }
  if (cur.length) out.push(cur);
  return out;
}

export async function filterShard(state: ShardState, ctx: StageRunContext<'filter' | 'caption'> & { model: ImageTextScorer }): Promise<void> {
  const f = { ...ctx.config.filter, keepTop: ctx.config.caption.keepTop };
  const rows = state.records.filter((r) => r.status === 'pending' && !r.trusted && r.image !== null);
  for (const batch of batches(rows, ctx.config.filter.batchSize)) {
    ctx.signal.throwIfAborted();
    const scorable = batch.filter((r) => textsOf(r).length > 0);
    const items: { image: ImageInput; texts: string[] }[] = await Promise.all(
      scorable.map(async (r) => ({ image: { key: r.key, bytes: await ctx.staging.getBlob(r.image!.ref) }, texts: textsOf(r).map((t) => t.text) })),
    );
    const results = items.length ? await ctx.model.score(items) : [];
    scorable.forEach((r, j) => {
      const res = results[j];
      if (!res.ok) {
        r.status = 'failed';
        r.reason = res.code;
        r.reasonDetail = res.message;
        return;
      }
      const sources = textsOf(r);
      r.scores = res.value.map((s, k) => ({ text: s.text, source: sources[k].source, itm: s.itm, itc: s.itc, kept: false }));
    });
    for (const r of batch) if (r.status === 'pending') decideRow(r, f);
  }
}
