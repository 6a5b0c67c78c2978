import type { Captioner, ImageTextScorer } from '../models/roles.ts';
import type { GenerationOptions } from '../models/runtime/generation/types.ts';
import type { ImageInput } from '../models/runtime/types.ts';
import { captionMatchesScene, groundTruthCaption } from './captions.ts';
import { generateDemoPairs, type DemoPair, type NoiseLabel } from './pairs.ts';
import { renderScene, type ImageFormat } from './render.ts';

/**
 * Quality of a BLIP captioner + filter on freshly generated demo scenes, measured through the
 * runtime's Captioner/Filter interfaces (the same calls the pipeline makes). Fractions in 0–1.
 */
export interface DemoEvalOptions {
  n: number;
  seed: number;
  /** Served image side and encoding (the demo server's defaults). */
  size: number;
  format: ImageFormat;
  /** Nucleus captions per image. */
  k: number;
  /** ITC retrieval pools of 100 images (each costs 100×100 filter rows). */
  itcPools: number;
  /** Images per captioner/filter call. */
  batch: number;
  onProgress?: (phase: string, done: number, total: number) => void;
}

export interface DemoEvalResult {
  n: number;
  seed: number;
  caption_exact: number;
  caption_exact_nucleus: number;
  /** Share of images whose K nucleus captions are not all identical. */
  caption_nucleus_diverse: number;
  itm_kept_correct: number;
  itm_rejected_mismatched: number;
  itm_rejected_junk: number;
  itm_rejected_swapped: number;
  itc_top1_100: number;
  counts: Record<NoiseLabel, number>;
  examples: { caption: string; greedy: string; nucleus: string[] }[];
  seconds: { render: number; greedy: number; nucleus: number; itm: number; itc: number };
}

const GENERATION: Omit<GenerationOptions, 'method' | 'numReturnSequences' | 'repetitionPenalty'> = {
  maxLength: 30, minLength: 10, numBeams: 1, lengthPenalty: 1, topP: 0.9, topK: 0, temperature: 1,
  prompt: 'a picture of ', seed: 0,
};

function unwrap<T>(r: { ok: true; value: T } | { ok: false; code: string; message: string; key: string }): T {
  if (!r.ok) throw new Error(`${r.key}: ${r.code} ${r.message}`);
  return r.value;
}

async function inBatches<T, R>(items: T[], size: number, fn: (chunk: T[]) => Promise<R[]>, progress?: (done: number) => void): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += size) {
    out.push(...(await fn(items.slice(i, i + size))));
    progress?.(Math.min(items.length, i + size));
  }
  return out;
}

const share = (xs: boolean[]): number => (xs.length === 0 ? Number.NaN : xs.filter(Boolean).length / xs.length);

export async function evaluateDemoModel(captioner: Captioner, filter: ImageTextScorer, options: DemoEvalOptions): Promise<DemoEvalResult> {
  const clock = () => performance.now() / 1000;
  let t = clock();
  const pairs: DemoPair[] = generateDemoPairs({ n: options.n, seed: options.seed });
  const images: ImageInput[] = [];
  for (const p of pairs) images.push({ key: p.key, bytes: await renderScene(p.scene, { size: options.size, format: options.format, quality: 90 }) });
  const seconds = { render: clock() - t, greedy: 0, nucleus: 0, itm: 0, itc: 0 };
  const progress = (phase: string) => (done: number) => options.onProgress?.(phase, done, images.length);

  t = clock();
  const greedy = (await inBatches(images, options.batch, (c) => captioner.caption(c, {
    ...GENERATION, method: 'greedy', numReturnSequences: 1, repetitionPenalty: 1,
  }), progress('greedy'))).map((r) => unwrap(r)[0] ?? '');
  seconds.greedy = clock() - t;

  t = clock();
  const nucleus = (await inBatches(images, options.batch, (c) => captioner.caption(c, {
    ...GENERATION, method: 'nucleus', numReturnSequences: options.k, repetitionPenalty: 1.1, seed: options.seed,
  }), progress('nucleus'))).map((r) => unwrap(r));
  seconds.nucleus = clock() - t;

  t = clock();
  const itm = (await inBatches(pairs.map((p, i) => ({ image: images[i] as ImageInput, texts: [p.webText] })), options.batch,
    (c) => filter.score(c), progress('itm'))).map((r) => (unwrap(r)[0] as { itm: number }).itm);
  seconds.itm = clock() - t;
  const byLabel = (label: NoiseLabel, keep: boolean) =>
    share(pairs.flatMap((p, i) => (p.label === label ? [((itm[i] as number) >= 0.5) === keep] : [])));

  t = clock();
  const itcHits: boolean[] = [];
  const pools = Math.min(options.itcPools, Math.floor(pairs.length / 100));
  for (let pool = 0; pool < pools; pool++) {
    const members = pairs.slice(pool * 100, pool * 100 + 100);
    const texts = members.map((p) => groundTruthCaption(p.scene));
    const scored = await inBatches(members.map((p) => ({ image: images[p.index] as ImageInput, texts })), 4, (c) => filter.score(c));
    scored.forEach((r, i) => {
      const sims = unwrap(r).map((s) => s.itc);
      const best = sims.indexOf(Math.max(...sims));
      itcHits.push(captionMatchesScene(texts[best] as string, (members[i] as DemoPair).scene));
    });
    options.onProgress?.('itc', (pool + 1) * 100, pools * 100);
  }
  seconds.itc = clock() - t;

  const counts = { correct: 0, mismatched: 0, swapped: 0, junk: 0 };
  for (const p of pairs) counts[p.label]++;
  return {
    n: pairs.length,
    seed: options.seed,
    caption_exact: share(greedy.map((c, i) => captionMatchesScene(c, (pairs[i] as DemoPair).scene))),
    caption_exact_nucleus: share(nucleus.flatMap((cs, i) => cs.map((c) => captionMatchesScene(c, (pairs[i] as DemoPair).scene)))),
    caption_nucleus_diverse: share(nucleus.map((cs) => new Set(cs).size > 1)),
    itm_kept_correct: byLabel('correct', true),
    itm_rejected_mismatched: byLabel('mismatched', false),
    itm_rejected_junk: byLabel('junk', false),
    itm_rejected_swapped: byLabel('swapped', false),
    itc_top1_100: share(itcHits),
    counts,
    examples: pairs.slice(0, 3).map((p, i) => ({ caption: p.caption, greedy: greedy[i] as string, nucleus: nucleus[i] as string[] })),
    seconds: Object.fromEntries(Object.entries(seconds).map(([k, v]) => [k, Math.round(v * 10) / 10])) as DemoEvalResult['seconds'],
  };
}
