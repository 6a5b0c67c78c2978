import { setScore, type RowRecord, type ScoredText } from '../../core/records.ts';
import type { ShardState } from '../../core/shard.ts';
import type { ImageTextEmbedder } from '../../models/roles.ts';
import type { ImageInput } from '../../models/runtime/types.ts';
import { buildClassifier, classify, loadLabels, loadTemplates, type ZeroShotClassifier } from '../../models/zero-shot.ts';
import { decideRow, type FilterOptions } from '../decisions.ts';
import { MemoryTopFractionSketch, rankedScores, type TopFractionSketch } from '../top-fraction.ts';
import { textsOf } from './filter.ts';
import type { StageRunContext } from './types.ts';

/**
 * CLIP stage: the CLIP score of every text of a row — the web text and each synthetic caption —
 * against its image: the cosine of CLIP's normalised image and text embeddings (what LAION and
 * DataComp filter on). The image is embedded once for all its texts; a batch's texts go through
 * the text tower together.
 * Input: non-trusted rows with a staged image that are pending or were decided by the filter stage.
 * Output: a `clip` score on each ScoredText (texts the filter did not score are added), then the
 * decision again with every rule (BLIP's and `clip.minScore`; all must pass) and keep-top ranked
 * by `caption.selectBy`. Rows the filter did not decide and no CLIP rule judges stay pending (the
 * writer keeps them unfiltered), except that with a CLIP rule a row with no text at all is
 * filtered; an image CLIP cannot use fails its row alone.
 * With `clip.topFraction`, the shard's scores are added to the run's shared histogram
 * (`ctx.topFractionSketch`, src/pipeline/top-fraction.ts) once every batch is scored, and its rows
 * are decided with the merged histogram's threshold, marked provisional (`clipTop`); the run's
 * final pass decides them exactly.
 * Receives config.clip, config.filter, config.caption and the embedder role (`ctx.model`).
 */
function scorable(r: RowRecord): boolean {
  return !r.trusted && r.image !== null && (r.status === 'pending' || ((r.status === 'kept' || r.status === 'filtered') && r.scores.length > 0));
}

/** The row's texts as ScoredTexts: the filter's, or new ones (web first) when the run has no filter. */
function scoredTexts(r: RowRecord): ScoredText[] {
  if (r.scores.length) return r.scores;
  return textsOf(r).map((t) => ({ text: t.text, source: t.source, kept: false }) as ScoredText);
}

function base64(v: Float32Array): string {
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64');
}

export function clipOptions(config: StageRunContext<'clip' | 'filter' | 'caption'>['config']): FilterOptions {
  return { ...config.filter, keepTop: config.caption.keepTop, selectBy: config.caption.selectBy, clipMinScore: config.clip.minScore };
}

/** Per-process histograms for stages run without a shared one (a run's own Redis one is shared by every worker). */
const memorySketches = new Map<string, MemoryTopFractionSketch>();

function sketchFor(ctx: StageRunContext, runId: string): TopFractionSketch {
  if (ctx.topFractionSketch) return ctx.topFractionSketch;
  let s = memorySketches.get(runId);
  if (!s) memorySketches.set(runId, (s = new MemoryTopFractionSketch()));
  return s;
}

/**
 * Class embeddings per embedder and label set, built once per process (thousands of classes ×
 * 80 templates must not go through the text tower for every shard).
 */
const classifiers = new WeakMap<ImageTextEmbedder, Map<string, Promise<ZeroShotClassifier>>>();

function classifierFor(model: ImageTextEmbedder, labelsFile: string, templates: string): Promise<ZeroShotClassifier> {
  let byKey = classifiers.get(model);
  if (!byKey) classifiers.set(model, (byKey = new Map()));
  const key = `${labelsFile}\u0000${templates}`;
  let p = byKey.get(key);
  if (!p) {
    p = buildClassifier(model, loadLabels(labelsFile), loadTemplates(templates));
    p.catch(() => byKey!.delete(key));
    byKey.set(key, p);
  }
  return p;
}

export async function clipShard(state: ShardState, ctx: StageRunContext<'clip' | 'filter' | 'caption'> & { model: ImageTextEmbedder }): Promise<void> {
  const f = clipOptions(ctx.config);
  const rows = state.records.filter(scorable);
  const size = ctx.config.clip.batchSize;
  const c = ctx.config.clip;
  const classifier = c.labels ? await classifierFor(ctx.model, c.labels, c.templates) : null;
  const decide: RowRecord[] = [];
  for (let i = 0; i < rows.length; i += size) {
    ctx.signal.throwIfAborted();
    const batch = rows.slice(i, i + size).filter((r) => scoredTexts(r).length > 0);
    if (!batch.length) continue;
    const images: ImageInput[] = await Promise.all(batch.map(async (r) => ({ key: r.key, bytes: await ctx.staging.getBlob(r.image!.ref) })));
    const embedded = await ctx.model.embedImages(images);
    const texts = batch.map(scoredTexts);
    const ok = batch.map((_, j) => embedded[j].ok);
    const textEmb = await ctx.model.embedTexts(texts.flatMap((t, j) => (ok[j] ? t.map((s) => s.text) : [])));
    let next = 0;
    batch.forEach((r, j) => {
      const img = embedded[j];
      if (!img.ok) {
        r.status = 'failed';
        r.reason = img.code;
        r.reasonDetail = img.message;
        return;
      }
      for (const s of texts[j]) {
        const t = textEmb[next++];
        let cos = 0;
        for (let k = 0; k < t.length; k++) cos += t[k] * img.value[k];
        setScore(s, 'clip', cos);
      }
      r.scores = texts[j];
      if (classifier) {
        r.labels = classify(classifier, img.value, c.labelsTopK)
          .filter((l) => c.labelMinProb === null || l.prob >= c.labelMinProb)
          .map(({ label, prob }) => ({ label, prob }));
      }
      if (ctx.config.clip.saveEmbeddings) {
        const web = texts[j].findIndex((s) => s.source === 'web');
        r.clipEmbedding = { image: base64(img.value), text: web >= 0 ? base64(textEmb[next - texts[j].length + web]) : null };
      }
      decide.push(r);
    });
  }
  const fraction = c.topFraction;
  let threshold: number | null = null;
  if (fraction !== null) {
    // After the whole shard is scored: one round trip adds its texts and reads the run's threshold.
    const hist = await sketchFor(ctx, state.shard.runId).add(state.shard.shardId, rankedScores(decide));
    threshold = hist.topThreshold(fraction);
  }
  const options: FilterOptions = { ...f, clipTopThreshold: threshold };
  const clipRule = (f.clipMinScore !== null && f.clipMinScore !== undefined) || threshold !== null;
  for (const r of decide) {
    if (threshold !== null) r.clipTop = { threshold, provisional: true };
    const decidedByFilter = r.status !== 'pending';
    if (decidedByFilter || clipRule) decideRow(r, options);
  }
  // A row without any text cannot pass a CLIP rule: filtered ("the row has no text to score").
  if (clipRule || fraction !== null) for (const r of rows) if (r.status === 'pending' && scoredTexts(r).length === 0) decideRow(r, options);
}

