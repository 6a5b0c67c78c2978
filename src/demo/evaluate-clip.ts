import { captionMatchesScene, captionSemantics, sceneSemantics } from './captions.ts';
import { generateDemoPair, type DemoPair, type NoiseLabel } from './pairs.ts';
import { renderScene } from './render.ts';
import type { Scene } from './scene.ts';
import { COLOUR_NAMES, SHAPE_KINDS } from './vocab.ts';
import type { ImageTextEmbedder, ImageTextScorer } from '../models/roles.ts';
import type { ImageInput } from '../models/runtime/types.ts';

/**
 * Quality of a CLIP on fresh demo scenes, through the runtime's ImageTextEmbedder (the calls the
 * clip stage makes); `npm run eval:demo` runs it on the bundled models/demo-clip beside the BLIP
 * evaluation (evaluate.ts). Fractions in 0–1.
 * - zero-shot classification of one-shape scenes: the shape's kind (5 classes), its colour (8,
 *   class name "<colour> shape") and the background colour (8, "<colour> background"), with the
 *   single template "a photo of a {}." and with a template ensemble (each filled template embedded
 *   and normalised, averaged per class, renormalised); the colour also through prompts that name
 *   it with each kind ("<colour> <kind>", every template, averaged over the kinds), and each of
 *   these as a 7-way choice that leaves out the background's colour (a shape never has it);
 * - CLIP as a filter: keep a pair when cosine(image, web text) ≥ threshold. The threshold is
 *   chosen on the validation seed (never on the evaluation seed): the one that maximises the
 *   lowest of (kept correct, rejected mismatched, rejected junk) there; swapped texts take no part
 *   in the choice. Precision / recall of "correct" among kept, rejection per noise kind, retrieval
 *   top-1 among 100 ground-truth captions;
 * - BLIP ITM (a BLIP filter, P(match) ≥ 0.5, as evaluate.ts) on the same rows, and the agreement
 *   of the two filters' decisions;
 * - int8 against fp32 (the same model converted to int8): keep/drop agreement at the same threshold.
 * Seeds: the demo CLIP's training used 7, its validation 4242.
 */

export const SINGLE_TEMPLATE = 'a photo of a {}.';
export const TEMPLATES = [
  'a photo of a {}.', 'a picture of a {}.', 'an image of a {}.', 'a drawing of a {}.',
  'a rendering of a {}.', 'a simple drawing of a {}.', 'a photo of the {}.', 'a {} on a plain background.',
];
const LABELS: NoiseLabel[] = ['correct', 'mismatched', 'swapped', 'junk'];

export interface ClipEvalModels {
  /** The CLIP under test (fp32). */
  embedder: ImageTextEmbedder;
  /** The same CLIP at int8, for the decision agreement; null to skip it. */
  int8: ImageTextEmbedder | null;
  /** A BLIP filter for the ITM comparison on the same rows; null to skip it. */
  itm: ImageTextScorer | null;
}

export interface ClipEvalOptions {
  n: number;
  seed: number;
  valN: number;
  valSeed: number;
  zsN: number;
  onProgress?: (phase: string) => void;
}

type Rates = {
  kept_correct: number; rejected_mismatched: number; rejected_swapped: number; rejected_junk: number; precision: number; recall: number;
  rejected_swapped_by_change: Record<string, { n: number; rejected: number }>;
};

const round = (x: number, d = 4): number => Math.round(x * 10 ** d) / 10 ** d;
const share = (xs: boolean[]): number => (xs.length === 0 ? Number.NaN : xs.filter(Boolean).length / xs.length);

async function render(scene: Scene): Promise<Uint8Array> {
  return renderScene(scene, { size: 160, format: 'jpeg', quality: 90 });
}

function dot(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let k = 0; k < a.length; k++) s += a[k] * b[k];
  return s;
}

function normalise(v: Float32Array): Float32Array {
  const n = Math.sqrt(dot(v, v));
  return v.map((x) => x / n);
}

async function embedImages(e: ImageTextEmbedder, images: ImageInput[]): Promise<Float32Array[]> {
  return (await e.embedImages(images)).map((r) => {
    if (!r.ok) throw new Error(`${r.key}: ${r.code} ${r.message}`);
    return r.value;
  });
}

/** Per pair: cosine of its image and its web text. */
async function pairCosines(e: ImageTextEmbedder, images: ImageInput[], pairs: DemoPair[]): Promise<number[]> {
  const img = await embedImages(e, images);
  const txt = await e.embedTexts(pairs.map((p) => p.webText));
  return img.map((v, i) => dot(v, txt[i]));
}

/** What a swapped text changed: the background, a colour, a kind, or the relation (reversed). */
export function swapKind(p: DemoPair): 'background' | 'colour' | 'kind' | 'relation' | 'other' {
  const said = captionSemantics(p.webText);
  const truth = sceneSemantics(p.scene);
  if (!said) return 'other';
  if (said.background !== truth.background) return 'background';
  if (said.objects.join() !== truth.objects.join()) {
    const kinds = (objs: string[]) => objs.map((o) => o.split(' ')[1]).sort().join();
    return kinds(said.objects) === kinds(truth.objects) ? 'colour' : 'kind';
  }
  return said.relation !== truth.relation ? 'relation' : 'other';
}

/** Share of swapped texts rejected, by what they changed (count in brackets in the key's value). */
function swappedByChange(keep: boolean[], pairs: DemoPair[]): Record<string, { n: number; rejected: number }> {
  const out: Record<string, { n: number; rejected: number }> = {};
  pairs.forEach((p, i) => {
    if (p.label !== 'swapped') return;
    const k = swapKind(p);
    out[k] ??= { n: 0, rejected: 0 };
    out[k].n++;
    if (!keep[i]) out[k].rejected++;
  });
  for (const v of Object.values(out)) v.rejected = round(v.rejected / v.n);
  return out;
}

function rates(keep: boolean[], pairs: DemoPair[]): Rates {
  const by = (label: NoiseLabel, kept: boolean) => share(pairs.flatMap((p, i) => (p.label === label ? [keep[i] === kept] : [])));
  const tp = pairs.filter((p, i) => keep[i] && p.label === 'correct').length;
  const kept = keep.filter(Boolean).length;
  const correct = pairs.filter((p) => p.label === 'correct').length;
  return {
    kept_correct: round(by('correct', true)),
    rejected_mismatched: round(by('mismatched', false)),
    rejected_swapped: round(by('swapped', false)),
    rejected_junk: round(by('junk', false)),
    precision: round(kept ? tp / kept : Number.NaN),
    recall: round(correct ? tp / correct : Number.NaN),
    rejected_swapped_by_change: swappedByChange(keep, pairs),
  };
}

/**
 * The threshold that maximises min(kept correct, rejected mismatched, rejected junk) on the
 * given rows; among equally good thresholds, the middle one. Candidates lie midway between
 * consecutive distinct cosines.
 */
export function chooseThreshold(cos: number[], labels: NoiseLabel[]): { threshold: number; score: number } {
  const sorted = [...new Set(cos)].sort((a, b) => a - b);
  const candidates = sorted.slice(1).map((x, i) => (x + sorted[i]) / 2);
  const score = (t: number) => {
    const of = (l: NoiseLabel, keep: boolean) => share(cos.flatMap((c, i) => (labels[i] === l ? [(c >= t) === keep] : [])));
    return Math.min(of('correct', true), of('mismatched', false), of('junk', false));
  };
  let best = -1;
  let ties: number[] = [];
  for (const t of candidates) {
    const s = score(t);
    if (s > best + 1e-12) {
      best = s;
      ties = [t];
    } else if (Math.abs(s - best) <= 1e-12) ties.push(t);
  }
  return { threshold: ties[Math.floor(ties.length / 2)] ?? 0, score: best };
}

async function classEmbeddings(e: ImageTextEmbedder, classes: string[], templates: string[]): Promise<Float32Array[]> {
  const texts = classes.flatMap((c) => templates.map((t) => t.replace('{}', c)));
  const emb = await e.embedTexts(texts);
  return classes.map((_, ci) => {
    const mean = new Float32Array(emb[0].length);
    for (let t = 0; t < templates.length; t++) {
      const v = emb[ci * templates.length + t];
      for (let k = 0; k < mean.length; k++) mean[k] += v[k];
    }
    return normalise(mean);
  });
}

/** Top-1 accuracy; `excluded[i]` (optional) is a class image i cannot have, left out of its choice. */
function zeroShot(img: Float32Array[], classes: Float32Array[], truth: number[], excluded?: number[]): number {
  return share(img.map((v, i) => {
    let best = -1;
    for (let c = 0; c < classes.length; c++) {
      if (c !== excluded?.[i] && (best < 0 || dot(v, classes[c]) > dot(v, classes[best]))) best = c;
    }
    return best === truth[i];
  }));
}

export async function evaluateDemoClip(models: ClipEvalModels, o: ClipEvalOptions) {
  const clock = () => performance.now() / 1000;
  const seconds: Record<string, number> = {};
  const { embedder } = models;

  // Threshold on the validation seed.
  let t = clock();
  o.onProgress?.('validation');
  const valPairs = Array.from({ length: o.valN }, (_, i) => generateDemoPair(o.valSeed, i));
  const valImages = await Promise.all(valPairs.map(async (p) => ({ key: p.key, bytes: await render(p.scene) })));
  const valCos = await pairCosines(embedder, valImages, valPairs);
  const chosen = chooseThreshold(valCos, valPairs.map((p) => p.label));
  const threshold = chosen.threshold;
  seconds.validation = clock() - t;

  // Filter figures on the evaluation seed.
  t = clock();
  o.onProgress?.('filter');
  const pairs = Array.from({ length: o.n }, (_, i) => generateDemoPair(o.seed, i));
  const images = await Promise.all(pairs.map(async (p) => ({ key: p.key, bytes: await render(p.scene) })));
  const imgEmb = await embedImages(embedder, images);
  const webEmb = await embedder.embedTexts(pairs.map((p) => p.webText));
  const cos = imgEmb.map((v, i) => dot(v, webEmb[i]));
  const keep = cos.map((c) => c >= threshold);
  const meanCos = Object.fromEntries(LABELS.map((l) => {
    const xs = cos.filter((_, i) => pairs[i].label === l);
    return [l, round(xs.reduce((s, x) => s + x, 0) / xs.length)];
  }));
  const hits: boolean[] = [];
  for (let pool = 0; pool < Math.min(3, Math.floor(o.n / 100)); pool++) {
    const members = pairs.slice(pool * 100, pool * 100 + 100);
    const caps = await embedder.embedTexts(members.map((p) => p.caption));
    members.forEach((p, i) => {
      const sims = caps.map((c) => dot(imgEmb[pool * 100 + i], c));
      hits.push(captionMatchesScene(members[sims.indexOf(Math.max(...sims))].caption, p.scene));
    });
  }
  seconds.filter = clock() - t;

  // Zero-shot on one-shape scenes of the evaluation seed's stream.
  t = clock();
  o.onProgress?.('zero-shot');
  const zsScenes: Scene[] = [];
  for (let i = 0; zsScenes.length < o.zsN; i++) {
    const s = generateDemoPair(o.seed, i).scene;
    if (s.shapes.length === 1) zsScenes.push(s);
  }
  const zsImages = await Promise.all(zsScenes.map(async (s, i) => ({ key: `zs-${i}`, bytes: await render(s) })));
  const zsEmb = await embedImages(embedder, zsImages);
  const kinds = [...SHAPE_KINDS];
  const colours = COLOUR_NAMES.map((c) => `${c} shape`);
  const backgrounds = COLOUR_NAMES.map((c) => `${c} background`);
  const kindTruth = zsScenes.map((s) => kinds.indexOf(s.shapes[0].kind));
  const colourTruth = zsScenes.map((s) => COLOUR_NAMES.indexOf(s.shapes[0].colour));
  const backgroundTruth = zsScenes.map((s) => COLOUR_NAMES.indexOf(s.background));
  const task = async (classes: string[], truth: number[]) => ({
    single_template: round(zeroShot(zsEmb, await classEmbeddings(embedder, classes, [SINGLE_TEMPLATE]), truth)),
    ensemble: round(zeroShot(zsEmb, await classEmbeddings(embedder, classes, TEMPLATES), truth)),
  });
  // A shape never has the background's colour: the 7-way choice among the other colours.
  const colourNotBackground = async (classes: Float32Array[]) => round(zeroShot(zsEmb, classes, colourTruth, backgroundTruth));
  // Colour named through the kinds: class c = the templates filled with "<c> <kind>" for every
  // kind, all averaged (prompt ensembling over the other attribute).
  const colourByKind = await Promise.all(COLOUR_NAMES.map(async (c) =>
    (await classEmbeddings(embedder, [c], kinds.flatMap((k) => TEMPLATES.map((t) => t.replace('{}', `${c} ${k}`)))))[0]));
  const zero_shot = {
    scenes: zsScenes.length,
    kind: await task(kinds, kindTruth),
    colour: {
      ...(await task(colours, colourTruth)),
      ensemble_over_kinds: round(zeroShot(zsEmb, colourByKind, colourTruth)),
      not_background: {
        single_template: await colourNotBackground(await classEmbeddings(embedder, colours, [SINGLE_TEMPLATE])),
        ensemble: await colourNotBackground(await classEmbeddings(embedder, colours, TEMPLATES)),
        ensemble_over_kinds: await colourNotBackground(colourByKind),
      },
    },
    background: await task(backgrounds, backgroundTruth),
    classes: { kind: kinds, colour: colours, background: backgrounds, colour_over_kinds: '<colour> <kind> for each kind, in every template' },
    single_template: SINGLE_TEMPLATE,
    templates: TEMPLATES,
  };
  seconds.zero_shot = clock() - t;

  // BLIP ITM on the same rows.
  let blip: (Rates & { agreement_with_clip: Record<string, number> }) | null = null;
  if (models.itm) {
    t = clock();
    o.onProgress?.('blip');
    const itm: number[] = [];
    for (let s = 0; s < pairs.length; s += 16) {
      const res = await models.itm.score(pairs.slice(s, s + 16).map((p, k) => ({ image: images[s + k], texts: [p.webText] })));
      for (const r of res) {
        if (!r.ok) throw new Error(`${r.key}: ${r.code} ${r.message}`);
        itm.push(r.value[0].itm);
      }
    }
    const blipKeep = itm.map((p) => p >= 0.5);
    const agree = (label?: NoiseLabel) => round(share(pairs.flatMap((p, i) => (label === undefined || p.label === label ? [blipKeep[i] === keep[i]] : []))));
    blip = { ...rates(blipKeep, pairs), agreement_with_clip: { all: agree(), ...Object.fromEntries(LABELS.map((l) => [l, agree(l)])) } };
    seconds.blip = clock() - t;
  }

  // int8 against fp32.
  let int8: (Rates & { decision_agreement: number; max_abs_cosine_diff: number }) | null = null;
  if (models.int8) {
    t = clock();
    o.onProgress?.('int8');
    const q = models.int8;
    const qImg = await embedImages(q, images);
    const qTxt = await q.embedTexts(pairs.map((p) => p.webText));
    const qCos = qImg.map((v, i) => dot(v, qTxt[i]));
    const qKeep = qCos.map((c) => c >= threshold);
    int8 = {
      decision_agreement: round(share(qKeep.map((k, i) => k === keep[i]))),
      max_abs_cosine_diff: round(Math.max(...qCos.map((c, i) => Math.abs(c - cos[i]))), 5),
      ...rates(qKeep, pairs),
    };
    seconds.int8 = clock() - t;
  }

  const counts = Object.fromEntries(LABELS.map((l) => [l, pairs.filter((p) => p.label === l).length]));
  const clip = { ...rates(keep, pairs), mean_cosine: meanCos, retrieval_top1_100: round(share(hits)) };
  return {
    seed: o.seed,
    n: o.n,
    counts,
    threshold: round(threshold, 5),
    threshold_rule: 'maximises min(kept correct, rejected mismatched, rejected junk) on the validation seed',
    validation: { seed: o.valSeed, n: o.valN, min_rate_at_threshold: round(chosen.score) },
    zero_shot,
    clip,
    blip_itm: blip,
    int8,
    targets: {
      zero_shot_kind_ge_0_90: Math.max(zero_shot.kind.single_template, zero_shot.kind.ensemble) >= 0.9,
      kept_correct_ge_0_95: clip.kept_correct >= 0.95,
      rejected_mismatched_ge_0_95: clip.rejected_mismatched >= 0.95,
      rejected_junk_ge_0_95: clip.rejected_junk >= 0.95,
      int8_agreement_ge_0_99: int8 ? int8.decision_agreement >= 0.99 : null,
    },
    seconds: Object.fromEntries(Object.entries(seconds).map(([k, v]) => [k, round(v, 1)])),
  };
}
