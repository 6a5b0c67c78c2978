import { SCORE_NAMES, scoreOf, setScore, type RowRecord, type ScoredText } from '../../core/records.ts';

/**
 * Columns of the shard parquet, described once each: name, type, the value for a record, and
 * (for columns that carry record data rather than a summary of it) how `readShardParquet` puts
 * the value back. The writer lays out its own frame (the row's identity, outcome and selected
 * caption) around the columns the stages contribute; which stage contributes which group, and in
 * what order, is the stage table's business (src/pipeline/stages/table.ts). The groups here are
 * the RowRecord fields the built-in stages fill, plus `scoredTextColumns` for any score names.
 *
 * Nothing here may change the name or type of a column that is written today: users query the
 * files, and `rethreshold`/`retry-failed` read old ones.
 */
export type ColumnType = 'string' | 'int32' | 'int64' | 'double' | 'boolean' | 'list<string>' | 'list<double>' | 'list<boolean>';

/** One row as hyparquet reads it back (int64 as bigint, lists as arrays). */
export type ParquetRow = Record<string, unknown>;

export interface OutputColumn {
  name: string;
  type: ColumnType;
  /** The column's value for one record; null for none. int64 values may be numbers. */
  value(r: RowRecord): unknown;
  /**
   * Puts what the column holds back into a record being read (its frame already filled in), in
   * column order. Columns derived from others (e.g. `web_itm`) have none.
   */
  restore?(r: RowRecord, row: ParquetRow): void;
}

const present = (row: ParquetRow, k: string) => row[k] !== null && row[k] !== undefined;
export const str = (row: ParquetRow, k: string): string | null => (present(row, k) ? String(row[k]) : null);
export const num = (row: ParquetRow, k: string): number | null => (present(row, k) ? Number(row[k]) : null);
export const arr = <T>(row: ParquetRow, k: string): T[] => (Array.isArray(row[k]) ? (row[k] as T[]) : []);

/** The downloaded image: sizes, hash, format, duplicate mark (the download stage fills them). */
export const IMAGE_COLUMNS: readonly OutputColumn[] = [
  { name: 'width', type: 'int32', value: (r) => r.image?.width ?? null },
  { name: 'height', type: 'int32', value: (r) => r.image?.height ?? null },
  { name: 'original_width', type: 'int32', value: (r) => r.image?.originalWidth ?? null },
  { name: 'original_height', type: 'int32', value: (r) => r.image?.originalHeight ?? null },
  {
    name: 'sha256',
    type: 'string',
    value: (r) => r.image?.sha256 ?? null,
    restore: (r, row) => {
      const sha = str(row, 'sha256');
      if (sha === null || !present(row, 'width')) return;
      const duplicateOf = str(row, 'duplicate_of');
      r.image = {
        // The image is in the shard's tar (or filtered/NNNNN.tar) under the row's key.
        ref: `tar:${r.key}`,
        width: num(row, 'width')!,
        height: num(row, 'height')!,
        originalWidth: num(row, 'original_width')!,
        originalHeight: num(row, 'original_height')!,
        sha256: sha,
        format: str(row, 'image_format') ?? 'jpg',
        ...(duplicateOf !== null ? { duplicateOf } : {}),
      };
    },
  },
  { name: 'image_format', type: 'string', value: (r) => r.image?.format ?? null },
  { name: 'duplicate_of', type: 'string', value: (r) => r.image?.duplicateOf ?? null },
];

/** The request: HTTP status, final URL after redirects, bytes, attempts, time (download stage). */
export const FETCH_COLUMNS: readonly OutputColumn[] = [
  { name: 'http_status', type: 'int32', value: (r) => r.fetch?.httpStatus ?? null },
  { name: 'final_url', type: 'string', value: (r) => r.fetch?.finalUrl ?? null },
  { name: 'download_bytes', type: 'int64', value: (r) => r.fetch?.bytes ?? null },
  {
    name: 'download_attempts',
    type: 'int32',
    value: (r) => r.fetch?.attempts ?? null,
    restore: (r, row) => {
      if (!present(row, 'download_attempts')) return;
      r.fetch = { httpStatus: num(row, 'http_status'), finalUrl: str(row, 'final_url'), bytes: num(row, 'download_bytes') ?? 0, attempts: num(row, 'download_attempts')!, ms: num(row, 'download_ms') ?? 0 };
    },
  },
  { name: 'download_ms', type: 'int32', value: (r) => r.fetch?.ms ?? null },
];

/** The synthetic captions (caption stage). */
export const CAPTION_COLUMNS: readonly OutputColumn[] = [
  { name: 'captions', type: 'list<string>', value: (r) => r.captions, restore: (r, row) => void (r.captions = arr<string>(row, 'captions')) },
];

/** Zero-shot labels of the image, best first, and their probabilities (clip stage, clip.labels). */
export const LABEL_COLUMNS: readonly OutputColumn[] = [
  {
    name: 'labels',
    type: 'list<string>',
    value: (r) => r.labels?.map((l) => l.label) ?? [],
    restore: (r, row) => {
      const labels = arr<string>(row, 'labels');
      const probs = arr<number>(row, 'label_probs');
      if (labels.length) r.labels = labels.map((label, i) => ({ label, prob: probs[i] }));
    },
  },
  { name: 'label_probs', type: 'list<double>', value: (r) => r.labels?.map((l) => l.prob) ?? [] },
];

/**
 * The top-fraction rule's threshold for the row (clip.topFraction; null without the rule) and
 * whether it was provisional (decided while the run streamed; the run's final pass replaces it).
 */
export const CLIP_TOP_COLUMNS: readonly OutputColumn[] = [
  {
    name: 'clip_top_threshold',
    type: 'double',
    value: (r) => r.clipTop?.threshold ?? null,
    restore: (r, row) => {
      const threshold = num(row, 'clip_top_threshold');
      if (threshold !== null) r.clipTop = { threshold, provisional: row.clip_top_provisional === true };
    },
  },
  { name: 'clip_top_provisional', type: 'boolean', value: (r) => (r.clipTop ? r.clipTop.provisional : null) },
];

/** Semantic near-duplicates (`capfilt dedup`): the kept row this row duplicates, and their image cosine. */
export const NEAR_DUPLICATE_COLUMNS: readonly OutputColumn[] = [
  {
    name: 'near_duplicate_of',
    type: 'string',
    value: (r) => r.nearDuplicate?.of ?? null,
    restore: (r, row) => {
      const of = str(row, 'near_duplicate_of');
      if (of !== null) r.nearDuplicate = { of, cosine: num(row, 'near_duplicate_cosine') ?? Number.NaN };
    },
  },
  { name: 'near_duplicate_cosine', type: 'double', value: (r) => r.nearDuplicate?.cosine ?? null },
];

/** The text a row's web-side score belongs to: the web text, or a trusted pair's text. */
export function webScore(r: RowRecord): ScoredText | undefined {
  return r.scores.find((s) => s.source === 'web' || s.source === 'trusted');
}

/** The per-text list column of one score. */
export const perTextScoreColumn = (name: string): OutputColumn => ({
  name: `score_${name}`,
  type: 'list<double>',
  value: (r) => r.scores.map((s) => scoreOf(s, name) ?? null),
  restore: (r, row) => arr<number | null>(row, `score_${name}`).forEach((v, i) => r.scores[i] && v !== null && setScore(r.scores[i], name, v)),
});

/** The web text's value of one score, for quick queries (null when the web text was not scored). */
export const webScoreColumn = (name: string): OutputColumn => ({
  name: `web_${name}`,
  type: 'double',
  value: (r) => {
    const w = webScore(r);
    return w ? scoreOf(w, name) ?? null : null;
  },
});

/**
 * Every scored text of a row (web first) with its source, its scores and the filter's decision,
 * then the web text's scores: score_text, score_source, score_<name>..., score_kept, score_rejected_by, web_<name>....
 */
export function scoredTextColumns(scores: readonly string[]): OutputColumn[] {
  return [
    {
      name: 'score_text',
      type: 'list<string>',
      value: (r) => r.scores.map((s) => s.text),
      // Built key by key so that a record read back serialises like the one written (key.json).
      restore: (r, row) => void (r.scores = arr<string>(row, 'score_text').map((text) => ({ text }) as ScoredText)),
    },
    {
      name: 'score_source',
      type: 'list<string>',
      value: (r) => r.scores.map((s) => s.source),
      restore: (r, row) => arr<ScoredText['source']>(row, 'score_source').forEach((v, i) => r.scores[i] && (r.scores[i].source = v)),
    },
    ...scores.map(perTextScoreColumn),
    {
      name: 'score_kept',
      type: 'list<boolean>',
      value: (r) => r.scores.map((s) => s.kept),
      restore: (r, row) => arr<boolean>(row, 'score_kept').forEach((v, i) => r.scores[i] && (r.scores[i].kept = v)),
    },
    {
      // Which decision rules dropped each text, comma-separated ("" for a kept text): itm, itc,
      // clip, top_fraction, or top (keep-top). Files written before this column read back without it.
      name: 'score_rejected_by',
      type: 'list<string>',
      value: (r) => r.scores.map((s) => (s.rejectedBy ?? []).join(',')),
      restore: (r, row) => arr<string>(row, 'score_rejected_by').forEach((v, i) => r.scores[i] && v && (r.scores[i].rejectedBy = v.split(','))),
    },
    ...scores.map(webScoreColumn),
  ];
}

/** Score names in a file's column names: `score_<name>` lists other than text, source and kept. */
export function scoreNamesIn(columnNames: readonly string[]): string[] {
  return columnNames.map((n) => /^score_(.+)$/.exec(n)?.[1]).filter((n): n is string => n !== undefined && !['text', 'source', 'kept'].includes(n));
}

/**
 * The columns that store the built-in RowRecord fields, for callers that write or read a shard
 * without a stage table at hand (tests, tools). The pipeline writes the table's columns
 * (`outputColumns` in src/pipeline/stages/table.ts); a table test checks that the built-in
 * table's columns are these, in this order.
 */
export const RECORD_COLUMNS: readonly OutputColumn[] = [...IMAGE_COLUMNS, ...FETCH_COLUMNS, ...CAPTION_COLUMNS, ...scoredTextColumns(SCORE_NAMES), perTextScoreColumn('clip'), webScoreColumn('clip'), ...LABEL_COLUMNS, ...CLIP_TOP_COLUMNS, ...NEAR_DUPLICATE_COLUMNS];
