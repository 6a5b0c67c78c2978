import { Rng, streamSeed } from './prng.ts';
import { generateScene, type Scene } from './scene.ts';
import { cosmetic, junkText } from './texts.ts';
import { groundTruthCaption, paraphrases, sceneSemantics, semanticsKey, swappedCaption } from './captions.ts';

export type NoiseLabel = 'correct' | 'mismatched' | 'swapped' | 'junk';
export const NOISE_LABELS: readonly NoiseLabel[] = ['correct', 'mismatched', 'swapped', 'junk'];

/** Share of each noise label among generated pairs; normalised, need not sum to 1. */
export type NoiseMix = Record<NoiseLabel, number>;

/** Roughly what scraped alt text looks like: under half of it describes the image. */
export const DEFAULT_MIX: NoiseMix = { correct: 0.4, mismatched: 0.2, swapped: 0.2, junk: 0.2 };

export interface DemoPair {
  /** Stable row key, unique within one seed. */
  key: string;
  index: number;
  scene: Scene;
  /** Ground-truth caption (grammar form). */
  caption: string;
  /** The noisy "web" alt text paired with the image. */
  webText: string;
  label: NoiseLabel;
}

export interface DemoPairOptions {
  n: number;
  seed: number;
  mix?: Partial<NoiseMix>;
  /** Index of the first pair (for generating a dataset in chunks). */
  start?: number;
}

function pickLabel(rng: Rng, mix: NoiseMix): NoiseLabel {
  const total = NOISE_LABELS.reduce((s, l) => s + Math.max(0, mix[l]), 0);
  if (!(total > 0)) throw new RangeError('noise mix must have a positive weight');
  let r = rng.next() * total;
  for (const l of NOISE_LABELS) {
    r -= Math.max(0, mix[l]);
    if (r < 0) return l;
  }
  return 'correct';
}

function mismatchedCaption(scene: Scene, rng: Rng): string {
  const own = semanticsKey(sceneSemantics(scene));
  for (;;) {
    const other = generateScene(rng);
    if (semanticsKey(sceneSemantics(other)) !== own) return rng.pick(paraphrases(other));
  }
}

/** Pair `index` of the dataset `seed`: depends on nothing else, so any slice is reproducible. */
export function generateDemoPair(seed: number, index: number, mix: NoiseMix = DEFAULT_MIX): DemoPair {
  const sceneRng = new Rng(streamSeed(seed, index, 0));
  const textRng = new Rng(streamSeed(seed, index, 1));
  const scene = generateScene(sceneRng);
  const label = pickLabel(textRng, mix);
  let webText: string;
  switch (label) {
    case 'correct': webText = cosmetic(textRng.pick(paraphrases(scene)), textRng); break;
    case 'mismatched': webText = cosmetic(mismatchedCaption(scene, textRng), textRng); break;
    case 'swapped': webText = cosmetic(swappedCaption(scene, textRng), textRng); break;
    case 'junk': webText = junkText(textRng).text; break;
  }
  return { key: `demo-${String(index).padStart(7, '0')}`, index, scene, caption: groundTruthCaption(scene), webText, label };
}

export function generateDemoPairs(options: DemoPairOptions): DemoPair[] {
  const mix = { ...DEFAULT_MIX, ...options.mix };
  const start = options.start ?? 0;
  const out: DemoPair[] = [];
  for (let i = 0; i < options.n; i++) out.push(generateDemoPair(options.seed, start + i, mix));
  return out;
}
