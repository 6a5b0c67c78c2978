/**
 * Contracts between the parts of the BLIP runtime, and between the runtime and the pipeline.
 * Kept in one small file so that the weights readers, graph builder, generation and the
 * pipeline stages can be built and tested independently.
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

/**
 * One decoding session over the captioner's text decoder for a fixed set of images.
 * Rows are sequences being decoded (batch × beams × return sequences); each row is bound to
 * one image. The implementation keeps a KV cache; cross-attention keys/values of the image are
 * computed once when the session opens.
 */
export interface DecoderSession {
  readonly vocabSize: number;
  /** Number of rows currently held. */
  readonly rows: number;
  /**
   * Append tokens to every row (same count per row: the whole prefix on the first call, one
   * token afterwards) and return the logits of each row's last position, [rows, vocabSize].
   */
  step(tokens: number[][]): Promise<Float32Array>;
  /** Re-index rows: new row i continues old row `indices[i]` (beam reordering, expansion). */
  select(indices: number[]): void;
  close(): void;
}

export type DecodingMethod = 'greedy' | 'beam' | 'nucleus';

export interface GenerationOptions {
  method: DecodingMethod;
  /** Total length cap, counting bos and prompt tokens (HF `max_length`). */
  maxLength: number;
  /** Minimum total length before eos may be produced (HF `min_length`). */
  minLength: number;
  numBeams: number;
  lengthPenalty: number;
  topP: number;
  topK: number;
  temperature: number;
  repetitionPenalty: number;
  /** Captions returned per image (K). */
  numReturnSequences: number;
  /** Text prompt such as "a picture of "; stripped from the returned captions. */
  prompt: string;
  /** Base seed for sampling; combined with each image's key so retries reproduce. */
  seed: number;
}

export interface SpecialIds {
  bos: number;
  eos: number;
  pad: number;
  sep: number;
  cls: number;
}

/** An image to caption or score, identified by a stable key (the row key). */
export interface ImageInput {
  key: string;
  /** Encoded image bytes (jpeg/png/webp...). */
  bytes: Uint8Array;
}

export type PerImage<T> = { key: string; ok: true; value: T } | { key: string; ok: false; code: string; message: string };

export interface TextScore {
  text: string;
  /** ITM P(match): softmax of the two ITM logits, index 1. */
  itm: number;
  /** ITC cosine similarity between normalised image and text projections. */
  itc: number;
}

export interface RuntimeOptions {
  /** 'cpu' or 'cuda:N'. */
  device: string;
  /** Intra-op threads for the CPU execution provider (0 = ORT default). */
  threads: number;
  /** Graph precision: fp32 everywhere; fp16 for GPU; int8 (dynamic quantisation) for CPU. */
  precision: 'fp32' | 'fp16' | 'int8';
}

/** The captioner: BlipForConditionalGeneration (vision encoder + text decoder). */
export interface Captioner {
  /** One result per input, in order; a bad image fails alone (IMAGE_DECODE_FAILED). */
  caption(images: ImageInput[], options: GenerationOptions): Promise<PerImage<string[]>[]>;
  close(): Promise<void>;
}

/** The filter: BlipForImageTextRetrieval (vision encoder, text encoder + ITM head, ITC). */
export interface Filter {
  /** Scores every text of every item; each image is encoded once for all its texts. */
  score(items: { image: ImageInput; texts: string[] }[]): Promise<PerImage<TextScore[]>[]>;
  close(): Promise<void>;
}

/** What `loadBlip(dir, options)` in src/models/blip/index.ts returns. */
export interface BlipModels {
  captioner: Captioner | null;
  filter: Filter | null;
  /** Model ids and file hashes for run.json. */
  info: { captioner: Record<string, unknown> | null; filter: Record<string, unknown> | null };
}
