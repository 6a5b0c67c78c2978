import { rm } from 'node:fs/promises';
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { fileWriter, parquetWrite } from 'hyparquet-writer';
import type { SchemaElement } from 'hyparquet';
import { CapfiltError } from '../../core/errors.ts';
import type { ObjectRef } from '../storage/object-store.ts';
import type { RowRecord, RowStatus } from '../../core/records.ts';
import { commitFile, tempPathFor } from './atomic.ts';
import { RECORD_COLUMNS, perTextScoreColumn, scoreNamesIn, scoredTextColumns, str, type ColumnType, type OutputColumn, type ParquetRow } from './columns.ts';

/**
 * The shard's parquet: one row per input row, whatever happened to it. Column layout:
 *   key, row_index, url, text, trusted, <extra columns>, status, reason, reason_detail   (frame)
 *   <the stage table's columns, stage by stage>; for the built-in stages (columns.ts):
 *     width, height, original_width, original_height, sha256, image_format, duplicate_of,
 *     http_status, final_url, download_bytes, download_attempts, download_ms        (download)
 *     captions           list<string>  synthetic captions                          (caption)
 *     score_text         list<string>  every scored text (web first), with          (filter)
 *     score_source       list<string>  web | synthetic | trusted
 *     score_itm          list<double>  ITM P(match)
 *     score_itc          list<double>  ITC cosine
 *     score_kept         list<bool>    the filter's decision per text
 *     score_rejected_by  list<string>  the rules that dropped each text (itm, itc, clip, top), comma-separated
 *     web_itm, web_itc   double        the web text's scores (null when not scored), for quick queries
 *   selected           string        the text written to key.txt                      (frame)
 * Extra columns keep their input names (a name that clashes with another column gets an
 * `extra_` prefix); their names and encodings are in the key-value metadata `capfilt.extra`,
 * so `readShardParquet` can rebuild the records exactly (rethreshold, retry-failed).
 */
type ExtraEncoding = 'string' | 'double' | 'boolean' | 'json';
interface ExtraColumn {
  name: string;
  column: string;
  encoding: ExtraEncoding;
}

/** The frame: the row's identity before the extra columns, its outcome after them, and the selected caption last. */
const HEAD: readonly OutputColumn[] = [
  { name: 'key', type: 'string', value: (r) => r.key },
  { name: 'row_index', type: 'int64', value: (r) => r.rowIndex },
  { name: 'url', type: 'string', value: (r) => r.url },
  { name: 'text', type: 'string', value: (r) => r.text },
  { name: 'trusted', type: 'boolean', value: (r) => r.trusted },
];
const OUTCOME: readonly OutputColumn[] = [
  { name: 'status', type: 'string', value: (r) => r.status },
  { name: 'reason', type: 'string', value: (r) => r.reason },
  { name: 'reason_detail', type: 'string', value: (r) => r.reasonDetail },
];
const TAIL: readonly OutputColumn[] = [{ name: 'selected', type: 'string', value: (r) => r.selected }];

const PARQUET_TYPE: Record<ColumnType, { type: SchemaElement['type']; utf8: boolean; list: boolean }> = {
  string: { type: 'BYTE_ARRAY', utf8: true, list: false },
  int32: { type: 'INT32', utf8: false, list: false },
  int64: { type: 'INT64', utf8: false, list: false },
  double: { type: 'DOUBLE', utf8: false, list: false },
  boolean: { type: 'BOOLEAN', utf8: false, list: false },
  'list<string>': { type: 'BYTE_ARRAY', utf8: true, list: true },
  'list<double>': { type: 'DOUBLE', utf8: false, list: true },
  'list<boolean>': { type: 'BOOLEAN', utf8: false, list: true },
};

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

function schemaOf(c: Pick<OutputColumn, 'name' | 'type'>): SchemaElement[] {
  const t = PARQUET_TYPE[c.type];
  return t.list ? list(c.name, t.type, t.utf8) : [leaf(c.name, t.type, t.utf8)];
}

function dataOf(c: OutputColumn, records: RowRecord[]): unknown[] {
  if (c.type !== 'int64') return records.map((r) => c.value(r) ?? null);
  return records.map((r) => {
    const v = c.value(r);
    return v === null || v === undefined ? null : BigInt(v as number | bigint);
  });
}

/** Every column name of the layout except the extras: an extra column with one of these names is renamed. */
function reservedNames(columns: readonly OutputColumn[]): Set<string> {
  return new Set([...HEAD, ...OUTCOME, ...columns, ...TAIL].map((c) => c.name));
}

function extraColumns(records: RowRecord[], reserved: Set<string>): ExtraColumn[] {
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
    return { name, column: reserved.has(name) || name === '__proto__' ? `extra_${name}` : name, encoding };
  });
}

/** A Buffer's bytes as the ArrayBuffer hyparquet reads (a Buffer may be a view into a larger pool). */
function toArrayBuffer(b: Buffer): ArrayBuffer {
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
}

/**
 * Writes the shard's parquet: the frame around `columns` (the stage table's; by default the
 * built-in record columns).
 */
export async function writeShardParquet(finalPath: string, records: RowRecord[], columns: readonly OutputColumn[] = RECORD_COLUMNS): Promise<void> {
  const extras = extraColumns(records, reservedNames(columns));
  const extraCols: OutputColumn[] = extras.map((e) => ({
    name: e.column,
    type: e.encoding === 'double' ? 'double' : e.encoding === 'boolean' ? 'boolean' : 'string',
    value: (r) => {
      const v = r.extra[e.name];
      if (v === null || v === undefined) return null;
      return e.encoding === 'json' ? JSON.stringify(v) : v;
    },
  }));
  const all = [...HEAD, ...extraCols, ...OUTCOME, ...columns, ...TAIL];
  const dup = all.find((c, i) => all.findIndex((d) => d.name === c.name) !== i);
  if (dup) throw new CapfiltError('OUTPUT_WRITE_FAILED', `${finalPath}: two columns are named ${dup.name}`, { file: finalPath });
  const columnData = all.map((c) => ({ name: c.name, data: dataOf(c, records) }));
  const schema: SchemaElement[] = [{ name: 'root', num_children: all.length }, ...all.flatMap(schemaOf)];
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
 * shard's tar, or in filtered/NNNNN.tar); fetch details, captions and scores come back as written.
 * `columns` restore what they hold (default: the built-in record columns); every `score_<name>`
 * list in the file comes back as a score of that name, whichever stage wrote it.
 */
export async function readShardParquet(source: string | ObjectRef, columns: readonly OutputColumn[] = RECORD_COLUMNS): Promise<RowRecord[]> {
  let rows: ParquetRow[];
  let extras: ExtraColumn[];
  let names: string[];
  const path = typeof source === 'string' ? source : source.store.locate(source.name);
  try {
    // A shard's parquet is small (hundreds of bytes a row): one GET beats ranged reads on S3.
    const file = typeof source === 'string' || source.store.kind === 'fs' ? await asyncBufferFromFile(path) : toArrayBuffer(await source.store.read(source.name));
    const meta = await parquetMetadataAsync(file);
    extras = JSON.parse(meta.key_value_metadata?.find((kv) => kv.key === 'capfilt.extra')?.value ?? '[]') as ExtraColumn[];
    names = meta.schema.slice(1).filter((el) => el.name !== 'list' && el.name !== 'element').map((el) => el.name);
    rows = await parquetReadObjects({ file, metadata: meta, compressors });
  } catch (e) {
    throw new CapfiltError('OUTPUT_SHARD_INVALID', `${path}: not a readable capfilt shard parquet (${(e as Error).message})`, { file: path }, { cause: e });
  }
  // Texts come back with their sources and decisions even when `columns` do not name them, and
  // every score in the file with them, whichever stage wrote it (one outside the caller's table).
  const known = new Set(columns.map((c) => c.name));
  const restorers = [
    ...(known.has('score_text') ? [] : scoredTextColumns([])),
    ...columns,
    ...scoreNamesIn(names).filter((n) => !known.has(`score_${n}`)).map(perTextScoreColumn),
  ].filter((c) => c.restore && names.includes(c.name));
  return rows.map((x) => {
    const extra: Record<string, unknown> = Object.create(null);
    for (const e of extras) {
      const v = x[e.column];
      extra[e.name] = v === null || v === undefined ? null : e.encoding === 'json' ? JSON.parse(String(v)) : v;
    }
    const r: RowRecord = {
      key: String(x.key),
      rowIndex: Number(x.row_index),
      url: str(x, 'url'),
      text: str(x, 'text'),
      extra,
      trusted: x.trusted === true,
      status: String(x.status) as RowStatus,
      reason: str(x, 'reason'),
      reasonDetail: str(x, 'reason_detail'),
      image: null,
      captions: [],
      scores: [],
      selected: str(x, 'selected'),
      fetch: null,
    };
    for (const c of restorers) c.restore!(r, x);
    return r;
  });
}
