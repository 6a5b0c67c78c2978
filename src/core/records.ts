/**
 * The per-row record that travels (as shard state in the staging store, not in job payloads)
 * through download → caption → filter → write. Each stage fills in its part; the write stage
 * turns every record into exactly one parquet row. Status starts `pending` and must be `kept`,
 * `filtered` or `failed` when the shard is written.
 */
export type RowStatus = 'pending' | 'kept' | 'filtered' | 'failed';

export interface StagedImage {
  /** Reference of the encoded (resized) image in the staging store. */
  ref: string;
  width: number;
  height: number;
  originalWidth: number;
  originalHeight: number;
  /** sha256 (hex) of the original downloaded bytes. */
  sha256: string;
  /** Encoded format of the staged image: 'jpg' | 'webp' | 'png'. */
  format: string;
  /** Key of the earlier row in this run with the same sha256, when duplicates are marked. */
  duplicateOf?: string;
}

export type TextSource = 'web' | 'synthetic' | 'trusted';

/**
 * The scores a text gets, by name. The stage table declares which stage adds which (the filter:
 * ITM P(match) and ITC cosine); each becomes the parquet columns `score_<name>` (one per text)
 * and `web_<name>` (the web text's). A stage registered beyond the built-in ones may add more
 * names at run time (read and set them with `scoreOf`/`setScore`).
 */
export const SCORE_NAMES = ['itm', 'itc'] as const;
export type ScoreName = (typeof SCORE_NAMES)[number];

export type ScoredText = {
  text: string;
  source: TextSource;
} & Record<ScoreName, number> & {
  kept: boolean;
  /**
   * The decision rules that rejected the text (itm, itc, clip, top_fraction; `top` when keep-top
   * dropped it).
   */
  rejectedBy?: string[];
};

/** A score of a text by name (undefined when the text has none of that name). */
export function scoreOf(t: ScoredText, name: string): number | undefined {
  const v = (t as unknown as Record<string, unknown>)[name];
  return typeof v === 'number' ? v : undefined;
}

export function setScore(t: ScoredText, name: string, value: number): void {
  (t as unknown as Record<string, unknown>)[name] = value;
}

export interface RowRecord {
  /** Stable key: shard id + position, e.g. "000420017". Also the webdataset sample key. */
  key: string;
  /** Index of the row in its input file (0-based). */
  rowIndex: number;
  url: string | null;
  /** The original (web) text. */
  text: string | null;
  /** Extra input columns kept with `saveAdditionalColumns`. */
  extra: Record<string, unknown>;
  /** Human-annotated pairs are merged unfiltered, as in the paper's bootstrapped dataset. */
  trusted: boolean;
  status: RowStatus;
  /** Reason code (from src/core/errors.ts, or a filter decision code) once the status is final. */
  reason: string | null;
  reasonDetail: string | null;
  image: StagedImage | null;
  /** Synthetic captions from the captioner (K per image). */
  captions: string[];
  /** Scores for the web text and every synthetic caption. */
  scores: ScoredText[];
  /** The caption written to key.txt, chosen by the selection policy. */
  selected: string | null;
  /** Download details: HTTP status, final URL after redirects, bytes, attempts. */
  fetch: { httpStatus: number | null; finalUrl: string | null; bytes: number; attempts: number; ms: number } | null;
  /**
   * CLIP embeddings kept for the embeddings output (clip.saveEmbeddings): base64 of little-endian
   * float32, the image's and the web text's (null without a web text). Set by the clip stage.
   */
  clipEmbedding?: { image: string; text: string | null };
  /** Zero-shot labels of the image, best first (clip.labels), with their softmax probabilities. */
  labels?: { label: string; prob: number }[];
  /**
   * The threshold the top-fraction rule (clip.topFraction) decided this row with, and whether it
   * was the run's provisional one (from the shared histogram, while the run streamed) or the exact
   * one of the final pass.
   */
  clipTop?: { threshold: number; provisional: boolean };
  /**
   * Set by `capfilt dedup` on a row it filtered (reason NEAR_DUPLICATE): the kept row whose image
   * embedding this one's reaches, and their cosine.
   */
  nearDuplicate?: { of: string; cosine: number };
}
