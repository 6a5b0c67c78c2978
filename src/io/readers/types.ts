import type { Clock } from '../../core/clock.ts';
import type { ErrorCode } from '../../core/errors.ts';
import type { S3Options } from '../storage/s3-client.ts';

/**
 * Reader contract. Every reader yields one `InputRow` per data row of its file, in file order,
 * with `rowIndex` counted from 0 over data rows (headers and blank lines are not rows). A row
 * that cannot be used carries `invalid` and is still yielded, so the pipeline can account for
 * it as `failed`; only file-level problems (unreadable file, missing url column) throw.
 */
export type InputFormat = 'parquet' | 'csv' | 'tsv' | 'jsonl' | 'txt';

export interface ReaderOptions {
  /** Column (key) with the image URL; img2dataset's `url_col`. */
  urlCol: string;
  /** Column with the web text; null for url lists or when there is none. img2dataset's `caption_col`. */
  captionCol: string | null;
  /** Columns copied into `extra` (and the output parquet); img2dataset's `save_additional_columns`. */
  saveAdditionalColumns: string[];
  /** Column whose truthy value marks a trusted (human-annotated) pair. */
  trustedCol: string | null;
  /** Captions longer than this (UTF-8 bytes) make the row invalid. */
  maxCaptionBytes: number;
  /** A CSV/TSV record longer than this is reported malformed and parsing resynchronises at the next line. */
  maxRecordBytes: number;
  format: InputFormat | 'auto';
  /**
   * Parquet: the least time one row group may take to decode before the decoder is stopped and
   * the rows not yet read fail with INPUT_UNREADABLE (the limit grows with the row group's
   * compressed size). Default PARQUET_DECODE_FLOOR_MS (10 s).
   */
  parquetDecodeFloorMs?: number;
  /** Parquet: the clock the decode time limit runs on; the real clock by default (tests pass a manual one). */
  clock?: Clock;
  /** How to reach S3 (config section s3); needed when a file is an s3:// location. */
  s3?: S3Options;
}

export const DEFAULT_READER_OPTIONS: ReaderOptions = {
  urlCol: 'url',
  captionCol: 'caption',
  saveAdditionalColumns: [],
  trustedCol: null,
  maxCaptionBytes: 16 * 1024,
  maxRecordBytes: 1024 * 1024,
  format: 'auto',
};

export interface InputRow {
  rowIndex: number;
  url: string | null;
  text: string | null;
  extra: Record<string, unknown>;
  trusted: boolean;
  invalid: { code: ErrorCode; detail: string } | null;
}

/** Rows [rowStart, rowEnd) of a file; `byteOffset` = where rowStart's record begins (text formats, from planning). */
export interface RowRange {
  rowStart: number;
  rowEnd: number;
  byteOffset?: number | null;
}

/** A raw record before validation: column values, or why the record could not be parsed. */
export interface RawRecord {
  values: Record<string, unknown> | null;
  malformed: string | null;
  /** The code `malformed` fails the row with; INPUT_ROW_MALFORMED when absent. */
  malformedCode?: ErrorCode;
  /** Byte offset of the record in the (decompressed) file. */
  offset: number;
}

/** Marks a string field whose bytes are not valid UTF-8 (kept apart from U+FFFD that was really in the data). */
export class InvalidUtf8 {
  constructor(readonly bytes: Uint8Array) {}
}
