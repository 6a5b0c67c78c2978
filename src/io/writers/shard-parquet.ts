import { rm } from 'node:fs/promises';
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { fileWriter, parquetWrite } from 'hyparquet-writer';
import type { SchemaElement } from 'hyparquet';
import { CapfiltError } from '../../core/errors.ts';
import type { RowRecord, RowStatus, ScoredText } from '../../core/records.ts';
import { commitFile, tempPathFor } from './atomic.ts';

/**
 * The shard's parquet: one row per input row, whatever happened to it. Column layout:
 *   key, row_index, url, text, trusted, <extra columns>, status, reason, reason_detail,
 *   width, height, original_width, original_height, sha256, image_format, duplicate_of,
 *   http_status, final_url, download_bytes, download_attempts, download_ms,
 *   captions           list<string>  synthetic captions
 *   score_text         list<string>  every scored text (web first), with
 *   score_source       list<string>  web | synthetic | trusted
 *   score_itm          list<double>  ITM P(match)
 *   score_itc          list<double>  ITC cosine
 *   score_kept         list<bool>    the filter's decision per text
 *   web_itm, web_itc   double        the web text's scores (null when not scored), for quick queries
 *   selected           string        the text written to key.txt
 * Extra columns keep their input names (a name that clashes with a column above gets an
 * `extra_` prefix); their names and encodings are in the key-value metadata `capfilt.extra`,
 * so `readShardParquet` can rebuild the records exactly (rethreshold, retry-failed).
 */
type ExtraEncoding = 'string' | 'double' | 'boolean' | 'json';
interface ExtraColumn {
  name: string;
  column: string;
  encoding: ExtraEncoding;
}

const CORE = [
  'key', 'row_index', 'url', 'text', 'trusted', 'status', 'reason', 'reason_detail', 'width', 'height', 'original_width',
  'original_height', 'sha256', 'image_format', 'duplicate_of', 'http_status', 'final_url', 'download_bytes', 'download_attempts',
  'download_ms', 'captions', 'score_text', 'score_source', 'score_itm', 'score_itc', 'score_kept', 'web_itm', 'web_itc', 'selected',
];

const leaf = (name: string, type: SchemaElement['type'], utf8 = false): SchemaElement => ({
  name,
  type,
  repetition_type: 'OPTIONAL',
  ...(utf8 ? { converted_type: 'UTF8' as const } : {}),
});
const list = (name: string, type: SchemaElement['type'], utf8 = false): SchemaElement[] => [
  { name, repetition_type: 'OPTIONAL', converted_type: 'LIST', num_children: 1 },
  { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
  leaf('element', type, utf8),
];

function extraColumns(records: RowRecord[]): ExtraColumn[] {
  const names = [...new Set(records.flatMap((r) => Object.keys(r.extra)))];
  return names.map((name) => {
    const values = records.map((r) => r.extra[name]).filter((v) => v !== null && v !== undefined);
    const encoding: ExtraEncoding = values.every((v) => typeof v === 'string')
      ? 'string'
      : values.every((v) => typeof v === 'number')
        ? 'double'
        : values.every((v) => typeof v === 'boolean')
          ? 'boolean'
          : 'json';
    // hyparquet reads rows into plain objects, where a "__proto__" column would vanish: rename it too.
    return { name, column: CORE.includes(name) || name === '__proto__' ? `extra_${name}` : name, encoding };
  });
}

function webScore(r: RowRecord): ScoredText | undefined {
  return r.scores.find((s) => s.source === 'web' || s.source === 'trusted');
}

export async function writeShardParquet(finalPath: string, records: RowRecord[]): Promise<void> {
  const extras = extraColumns(records);
  const col = <T>(f: (r: RowRecord) => T) => records.map(f);
  const columnData: Array<{ name: string; data: unknown[] }> = [
    { name: 'key', data: col((r) => r.key) },
    { name: 'row_index', data: col((r) => BigInt(r.rowIndex)) },
    { name: 'url', data: col((r) => r.url) },
    { name: 'text', data: col((r) => r.text) },
    { name: 'trusted', data: col((r) => r.trusted) },
    ...extras.map((e) => ({
      name: e.column,
      data: col((r) => {
        const v = r.extra[e.name];
        if (v === null || v === undefined) return null;
        return e.encoding === 'json' ? JSON.stringify(v) : v;
      }),
    })),
    { name: 'status', data: col((r) => r.status) },
    { name: 'reason', data: col((r) => r.reason) },
    { name: 'reason_detail', data: col((r) => r.reasonDetail) },
    { name: 'width', data: col((r) => r.image?.width ?? null) },
    { name: 'height', data: col((r) => r.image?.height ?? null) },
    { name: 'original_width', data: col((r) => r.image?.originalWidth ?? null) },
    { name: 'original_height', data: col((r) => r.image?.originalHeight ?? null) },
    { name: 'sha256', data: col((r) => r.image?.sha256 ?? null) },
    { name: 'image_format', data: col((r) => r.image?.format ?? null) },
    { name: 'duplicate_of', data: col((r) => r.image?.duplicateOf ?? null) },
    { name: 'http_status', data: col((r) => r.fetch?.httpStatus ?? null) },
    { name: 'final_url', data: col((r) => r.fetch?.finalUrl ?? null) },
    { name: 'download_bytes', data: col((r) => (r.fetch ? BigInt(r.fetch.bytes) : null)) },
    { name: 'download_attempts', data: col((r) => r.fetch?.attempts ?? null) },
    { name: 'download_ms', data: col((r) => r.fetch?.ms ?? null) },
    { name: 'captions', data: col((r) => r.captions) },
    { name: 'score_text', data: col((r) => r.scores.map((s) => s.text)) },
    { name: 'score_source', data: col((r) => r.scores.map((s) => s.source)) },
    { name: 'score_itm', data: col((r) => r.scores.map((s) => s.itm)) },
    { name: 'score_itc', data: col((r) => r.scores.map((s) => s.itc)) },
    { name: 'score_kept', data: col((r) => r.scores.map((s) => s.kept)) },
    { name: 'web_itm', data: col((r) => webScore(r)?.itm ?? null) },
    { name: 'web_itc', data: col((r) => webScore(r)?.itc ?? null) },
    { name: 'selected', data: col((r) => r.selected) },
  ];
  const schema: SchemaElement[] = [
    { name: 'root', num_children: columnData.length },
    leaf('key', 'BYTE_ARRAY', true),
    leaf('row_index', 'INT64'),
    leaf('url', 'BYTE_ARRAY', true),
    leaf('text', 'BYTE_ARRAY', true),
    leaf('trusted', 'BOOLEAN'),
    ...extras.map((e) => (e.encoding === 'double' ? leaf(e.column, 'DOUBLE') : e.encoding === 'boolean' ? leaf(e.column, 'BOOLEAN') : leaf(e.column, 'BYTE_ARRAY', true))),
    leaf('status', 'BYTE_ARRAY', true),
    leaf('reason', 'BYTE_ARRAY', true),
    leaf('reason_detail', 'BYTE_ARRAY', true),
    leaf('width', 'INT32'),
    leaf('height', 'INT32'),
    leaf('original_width', 'INT32'),
    leaf('original_height', 'INT32'),
    leaf('sha256', 'BYTE_ARRAY', true),
    leaf('image_format', 'BYTE_ARRAY', true),
    leaf('duplicate_of', 'BYTE_ARRAY', true),
    leaf('http_status', 'INT32'),
    leaf('final_url', 'BYTE_ARRAY', true),
    leaf('download_bytes', 'INT64'),
    leaf('download_attempts', 'INT32'),
    leaf('download_ms', 'INT32'),
    ...list('captions', 'BYTE_ARRAY', true),
    ...list('score_text', 'BYTE_ARRAY', true),
    ...list('score_source', 'BYTE_ARRAY', true),
    ...list('score_itm', 'DOUBLE'),
    ...list('score_itc', 'DOUBLE'),
    ...list('score_kept', 'BOOLEAN'),
    leaf('web_itm', 'DOUBLE'),
    leaf('web_itc', 'DOUBLE'),
    leaf('selected', 'BYTE_ARRAY', true),
  ];
  const tmp = tempPathFor(finalPath);
  try {
    const writer = fileWriter(tmp);
    await parquetWrite({
      writer,
      schema: schema as never,
      columnData: columnData as never,
      kvMetadata: [{ key: 'capfilt.extra', value: JSON.stringify(extras) }],
      createdBy: 'capfilt',
    });
  } catch (e) {
    await rm(tmp, { force: true });
    throw new CapfiltError('OUTPUT_WRITE_FAILED', `${finalPath}: ${(e as Error).message}`, { file: finalPath }, { cause: e });
  }
  await commitFile(tmp, finalPath);
}

/**
 * Rebuilds the records of a written shard. Image refs become `tar:<key>` (the image is in the
 * shard's tar, or in filtered/NNNNN.tar); fetch details and scores come back as written.
 */
export async function readShardParquet(path: string): Promise<RowRecord[]> {
  let rows: Record<string, unknown>[];
  let extras: ExtraColumn[];
  try {
    const file = await asyncBufferFromFile(path);
    const meta = await parquetMetadataAsync(file);
    extras = JSON.parse(meta.key_value_metadata?.find((kv) => kv.key === 'capfilt.extra')?.value ?? '[]') as ExtraColumn[];
    rows = await parquetReadObjects({ file, metadata: meta, compressors });
  } catch (e) {
    throw new CapfiltError('OUTPUT_SHARD_INVALID', `${path}: not a readable capfilt shard parquet (${(e as Error).message})`, { file: path }, { cause: e });
  }
  return rows.map((x) => {
    const str = (k: string) => (x[k] === null || x[k] === undefined ? null : String(x[k]));
    const num = (k: string) => (x[k] === null || x[k] === undefined ? null : Number(x[k]));
    const arr = <T>(k: string) => (Array.isArray(x[k]) ? (x[k] as T[]) : []);
    const extra: Record<string, unknown> = Object.create(null);
    for (const e of extras) {
      const v = x[e.column];
      extra[e.name] = v === null || v === undefined ? null : e.encoding === 'json' ? JSON.parse(String(v)) : v;
    }
    const texts = arr<string>('score_text');
    const sources = arr<ScoredText['source']>('score_source');
    const itm = arr<number>('score_itm');
    const itc = arr<number>('score_itc');
    const kept = arr<boolean>('score_kept');
    const key = String(x.key);
    const sha = str('sha256');
    return {
      key,
      rowIndex: Number(x.row_index),
      url: str('url'),
      text: str('text'),
      extra,
      trusted: x.trusted === true,
      status: String(x.status) as RowStatus,
      reason: str('reason'),
      reasonDetail: str('reason_detail'),
      image:
        sha !== null && x.width !== null
          ? {
              ref: `tar:${key}`,
              width: num('width')!,
              height: num('height')!,
              originalWidth: num('original_width')!,
              originalHeight: num('original_height')!,
              sha256: sha,
              format: str('image_format') ?? 'jpg',
              ...(str('duplicate_of') !== null ? { duplicateOf: str('duplicate_of')! } : {}),
            }
          : null,
      captions: arr<string>('captions'),
      scores: texts.map((text, i) => ({ text, source: sources[i], itm: itm[i], itc: itc[i], kept: kept[i] })),
      selected: str('selected'),
      fetch:
        x.download_attempts !== null && x.download_attempts !== undefined
          ? { httpStatus: num('http_status'), finalUrl: str('final_url'), bytes: num('download_bytes') ?? 0, attempts: num('download_attempts')!, ms: num('download_ms') ?? 0 }
          : null,
    } satisfies RowRecord;
  });
}
