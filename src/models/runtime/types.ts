/**
 * Contracts shared by every model family's runtime: weight tensors and the checkpoint readers
 * that produce them, the images a model is given, per-image results and the session options.
 */


/** A weight tensor as read from a checkpoint, always widened to float32 for graph building. */
export interface WeightTensor {
  shape: number[];
  /** Row-major float32 values (fp16/bf16 sources are converted on read). */
  data: Float32Array;
  /** dtype as stored in the file: 'F32' | 'F16' | 'BF16' | ... */
  sourceDtype: string;
}

/** Read access to a checkpoint by Hugging Face state-dict name. */
export interface WeightSource {
  /** The file the tensors come from (for error messages). */
  readonly file: string;
  keys(): string[];
  has(name: string): boolean;
  /** Shape without reading data. Throws WEIGHTS_MISSING_KEYS for an unknown name. */
  shape(name: string): number[];
  get(name: string): WeightTensor;
  close(): void;
}

/** An image to caption or score, identified by a stable key (the row key). */
export interface ImageInput {
  key: string;
  /** Encoded image bytes (jpeg/png/webp...). */
  bytes: Uint8Array;
}

export type PerImage<T> = { key: string; ok: true; value: T } | { key: string; ok: false; code: string; message: string };

export interface RuntimeOptions {
  /** 'cpu' or 'cuda:N'. */
  device: string;
  /** Intra-op threads for the CPU execution provider (0 = ORT default). */
  threads: number;
  /** Graph precision: fp32 everywhere; fp16 for GPU; int8 (dynamic quantisation) for CPU. */
  precision: 'fp32' | 'fp16' | 'int8';
  /**
   * Whether the CPU execution provider's intra-op threads spin while they wait for work (ORT's
   * default; absent = true). Spinning shortens each kernel's hand-off, but where several models
   * run at once on the same cores the spinning threads of one session take the cycles another
   * needs (`models.spinning`, src/models/runtime/precision.ts).
   */
  spinning?: boolean;
}
