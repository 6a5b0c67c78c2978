/**
 * The demo domain's public API: noisy image–text pairs with ground truth, their rendering, and
 * the caption grammar's meaning check (used to score captioner output).
 */
export { generateDemoPair, generateDemoPairs, DEFAULT_MIX, NOISE_LABELS } from './pairs.ts';
export type { DemoPair, DemoPairOptions, NoiseLabel, NoiseMix } from './pairs.ts';
export { renderScene, sceneToSvg } from './render.ts';
export type { ImageFormat, RenderOptions } from './render.ts';
export {
  captionMatchesScene, captionSemantics, captionVariants, groundTruthCaption, normaliseCaption,
  paraphrases, sceneSemantics, semanticsKey, swappedCaption,
} from './captions.ts';
export type { CaptionSemantics } from './captions.ts';
export { generateScene } from './scene.ts';
export type { Scene, Shape } from './scene.ts';
export { junkText } from './texts.ts';
export { Rng, streamSeed } from './prng.ts';
