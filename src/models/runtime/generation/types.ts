/**
 * The contract between generation (search and sampling over logits) and a family's decoder:
 * generation drives any `DecoderSession`, so its logic is tested without ONNX and the decoder
 * without search logic.
 */

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
   * token afterwards) and return the logits of each row's last position, [rows, vocabSize]
   * (valid until the next call: an implementation may reuse the buffer).
   */
  step(tokens: number[][]): Promise<Float32Array>;
  /**
   * Optional, for beam search: `step` that also returns each row's log Σ exp of its logits over
   * the vocabulary, [rows] (log-softmax = logits − logSumExp), computed by the decoder's runtime
   * (ONNX Runtime for BLIP), so the search needs no pass of exp in JS. Absent where it cannot.
   */
  stepWithLogSumExp?(tokens: number[][]): Promise<{ logits: Float32Array; logSumExp: Float32Array }>;
  /**
   * Optional, for sampling: each row's softmax of `scores` ([rows, vocabSize]: logits the
   * processors have edited, −∞ for forbidden tokens, which get exactly 0), computed by the
   * decoder's runtime, so sampling needs no pass of exp in JS. The result may be a buffer the
   * next call reuses. Absent where it cannot.
   */
  softmax?(scores: Float32Array, rows: number): Promise<RowProbabilities>;
  /**
   * Optional hint before the first step: sequences will reach at most `length` positions, so
   * a cache can be sized once.
   */
  reserve?(length: number): void;
  /** Re-index rows: new row i continues old row `indices[i]` (beam reordering, expansion). */
  select(indices: number[]): void;
  close(): void;
}

/** Each row's softmax, and optionally its `k` most likely tokens in order. */
export interface RowProbabilities {
  /** [rows, vocabSize]. */
  probs: Float32Array;
  /**
   * [rows, k] each: the row's k most likely tokens, most likely first (equal probabilities: the
   * lower id first), and their probabilities as in `probs`. A nucleus inside them is read off
   * them alone; one that needs more tokens is found from `probs`.
   */
  top?: { k: number; ids: Int32Array; probs: Float32Array };
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
