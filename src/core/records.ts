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

export interface ScoredText {
  text: string;
  source: TextSource;
  itm: number;
  itc: number;
  kept: boolean;
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
}
