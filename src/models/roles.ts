import type { GenerationOptions } from './runtime/generation/types.ts';
import type { ImageInput, PerImage } from './runtime/types.ts';

/**
 * The roles pipeline stages depend on. A stage asks for a role (caption the images; score texts
 * against images), never for a model family: BLIP fills the captioner and the image-text scorer
 * today, and a family registers here by implementing a role.
 */

export interface TextScore {
  text: string;
  /** ITM P(match): softmax of the two ITM logits, index 1. */
  itm: number;
  /** ITC cosine similarity between normalised image and text projections. */
  itc: number;
}

/** The captioner: BlipForConditionalGeneration (vision encoder + text decoder). */
export interface Captioner {
  /** One result per input, in order; a bad image fails alone (IMAGE_DECODE_FAILED). */
  caption(images: ImageInput[], options: GenerationOptions): Promise<PerImage<string[]>[]>;
  close(): Promise<void>;
}

/** The filter: BlipForImageTextRetrieval (vision encoder, text encoder + ITM head, ITC). */
export interface ImageTextScorer {
  /** Scores every text of every item; each image is encoded once for all its texts. */
  score(items: { image: ImageInput; texts: string[] }[]): Promise<PerImage<TextScore[]>[]>;
  close(): Promise<void>;
}

/**
 * The embedder: two towers into one space (CLIP). Embeddings are L2-normalised, so a dot
 * product is the cosine ("CLIP score"); `logitScale` is exp(logit_scale), the temperature
 * zero-shot classification multiplies cosines by before a softmax.
 */
export interface ImageTextEmbedder {
  /** Width of the shared embedding space (projection_dim). */
  readonly dim: number;
  readonly logitScale: number;
  /** One normalised embedding per image, in order; a bad image fails alone. */
  embedImages(images: ImageInput[]): Promise<PerImage<Float32Array>[]>;
  /** One normalised embedding per text, in order; long texts are truncated, never refused. */
  embedTexts(texts: string[]): Promise<Float32Array[]>;
  close(): Promise<void>;
}

/** Role names, and the call surface each role exposes across an inference thread. */
export const ROLES = {
  captioner: { methods: ['caption'], props: [] },
  imageTextScorer: { methods: ['score'], props: [] },
  embedder: { methods: ['embedImages', 'embedTexts'], props: ['dim', 'logitScale'] },
} as const satisfies Record<string, { methods: readonly string[]; props: readonly string[] }>;

export type RoleName = keyof typeof ROLES;

/** The thread-side description of `impl` serving `role` (its props read once). */
export function servedRole(role: RoleName, impl: object): { impl: object; methods: readonly string[]; props: Record<string, unknown> } {
  const spec = ROLES[role];
  return { impl, methods: spec.methods, props: Object.fromEntries(spec.props.map((p) => [p, (impl as Record<string, unknown>)[p]])) };
}
