import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { CapfiltError } from '../../core/errors.ts';
import { S3ObjectStore } from '../storage/object-store.ts';
import type { S3Options } from '../storage/s3-client.ts';
import { asPrefix, formatS3Url, isS3Url, parseS3Url } from '../storage/s3-url.ts';
import { fileChunks, isGzip, requireS3, s3Object } from './byte-source.ts';
import { delimitedRecords } from './delimited.ts';
import { lines } from './lines.ts';
import { parquetRecords, parquetRowCount } from './parquet.ts';
import { DEFAULT_READER_OPTIONS, InvalidUtf8, type InputFormat, type InputRow, type RawRecord, type ReaderOptions, type RowRange } from './types.ts';
import { toInputRow } from './validate.ts';

export * from './types.ts';

/**
 * Entry points: `listInputFiles` (a file or a folder of files, sorted so shard numbering is
 * deterministic; on S3 an object or the objects directly below a prefix), `readRows` (streaming, optionally a row range), `countRows` and `planShards`.
 *
 * Random access for shards: parquet seeks by row index through its metadata. Text formats have
 * no index, so `planShards` scans the file once and records the byte offset where each shard's
 * first record starts; `readRows` given that `byteOffset` seeks straight there (CSV/TSV read
 * their header from the file start first). A gzip file cannot seek: its shards are read by
 * decompressing from the start and skipping rows (cheap next to downloading the images).
 */
const EXTENSIONS: Array<[string, InputFormat]> = [
  ['.parquet', 'parquet'],
  ['.csv', 'csv'],
  ['.tsv', 'tsv'],
  ['.jsonl', 'jsonl'],
  ['.ndjson', 'jsonl'],
  ['.txt', 'txt'],
];

export function detectFormat(file: string, requested: InputFormat | 'auto' = 'auto'): InputFormat {
  if (requested !== 'auto') return requested;
  const name = file.toLowerCase().replace(/\.gz$/, '');
  const hit = EXTENSIONS.find(([ext]) => name.endsWith(ext));
  if (!hit) {
    throw new CapfiltError('INPUT_FORMAT_UNSUPPORTED', `${file}: unknown extension (expected ${EXTENSIONS.map((e) => e[0]).join(', ')}, optionally .gz)`, { file });
  }
  if (hit[1] === 'parquet' && isGzip(file)) throw new CapfiltError('INPUT_FORMAT_UNSUPPORTED', `${file}: parquet is compressed internally; .parquet.gz is not read`, { file });
  return hit[1];
}

function isInputName(n: string): boolean {
  return !n.startsWith('.') && EXTENSIONS.some(([ext]) => n.toLowerCase().replace(/\.gz$/, '').endsWith(ext));
}

function byName(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Input files of a path or s3:// URL (s3 options needed for the latter), sorted by name. */
export async function listInputFiles(path: string, s3?: S3Options): Promise<string[]> {
  if (isS3Url(path)) return listS3Inputs(path, s3);
  let st;
  try {
    st = await stat(path);
  } catch (e) {
    throw new CapfiltError('INPUT_UNREADABLE', `${path}: ${(e as Error).message}`, { path }, { cause: e });
  }
  if (!st.isDirectory()) return [path];
  const names = (await readdir(path)).filter(isInputName);
  names.sort(byName);
  if (names.length === 0) throw new CapfiltError('INPUT_UNREADABLE', `${path}: folder holds no parquet/csv/tsv/jsonl/txt files`, { path });
  return names.map((n) => join(path, n));
}

/**
 * An s3:// URL names one object, or (ending in "/", or when no object has that key) a prefix read
 * like a local folder: the input objects directly below it, not those under deeper prefixes.
 * S3 has no folders, so a prefix without input objects is reported like an empty folder.
 */
async function listS3Inputs(url: string, s3: S3Options | undefined): Promise<string[]> {
  const loc = parseS3Url(url);
  if (loc.key !== '' && !loc.key.endsWith('/')) {
    const { store, name } = s3Object(url, s3);
    if ((await store.size(name)) !== null) return [url];
  }
  const prefix = formatS3Url(asPrefix(loc));
  // Listing answers NoSuchBucket where a HEAD answers a bare 404, so a missing bucket is named as such.
  const objects = await new S3ObjectStore(prefix, requireS3(url, s3)).list();
  const names = objects.map((o) => o.name).filter((n) => !n.includes('/') && isInputName(n));
  if (names.length === 0) {
    if (loc.key !== '' && !loc.key.endsWith('/') && objects.length === 0) throw new CapfiltError('S3_NO_SUCH_KEY', `${url}: no such object (and no objects below ${prefix})`, { url });
    throw new CapfiltError('INPUT_UNREADABLE', `${prefix}: prefix holds no parquet/csv/tsv/jsonl/txt objects`, { path: url });
  }
  return names.sort(byName).map((n) => `${prefix}${n}`);
}

function withDefaults(o: Partial<ReaderOptions>): ReaderOptions {
  return { ...DEFAULT_READER_OPTIONS, ...Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) };
}

/** Rows of one file (or of `range`), validated. */
export async function* readRows(file: string, options: Partial<ReaderOptions> = {}, range?: RowRange): AsyncGenerator<InputRow> {
  const o = withDefaults(options);
  const start = range?.rowStart ?? 0;
  const end = range?.rowEnd ?? Infinity;
  let index = start;
  for await (const rec of rawRecords(file, o, range)) {
    yield toInputRow(rec, index++, o);
  }
  if (Number.isFinite(end) && index < end) {
    throw new CapfiltError('INPUT_UNREADABLE', `${file}: expected rows up to ${end}, file ended at ${index} (changed since planning?)`, { file });
  }
}

async function* rawRecords(file: string, o: ReaderOptions, range?: RowRange): AsyncGenerator<RawRecord> {
  const format = detectFormat(file, o.format);
  const start = range?.rowStart ?? 0;
  const end = range?.rowEnd ?? Infinity;
  if (format === 'parquet') {
    yield* parquetRecords(file, o, start, end);
    return;
  }
  const seek = range?.byteOffset != null && !isGzip(file) ? range.byteOffset : null;
  let index = seek !== null ? start : 0;
  for await (const rec of textRecords(file, format, o, seek)) {
    if (index >= end) return;
    if (index++ >= start) yield rec;
  }
}

/** Records of a text file from the beginning, or from `seek` (the offset of a record start). */
async function* textRecords(file: string, format: InputFormat, o: ReaderOptions, seek: number | null): AsyncGenerator<RawRecord> {
  if (format === 'csv' || format === 'tsv') {
    const delim = format === 'csv' ? 44 : 9;
    // From the start, the first record is the header; after a seek, the header is read separately.
    let names = seek === null ? null : await readHeader(file, delim, o);
    for await (const r of delimitedRecords(fileChunks(file, seek ?? 0, o.s3), delim, seek ?? 0, o.maxRecordBytes)) {
      if (names === null) {
        names = headerNames(file, r.fields, o);
        continue;
      }
      if (r.malformed !== null && r.fields.length === 0) {
        yield { values: null, malformed: r.malformed, offset: r.offset };
        continue;
      }
      const values: Record<string, unknown> = Object.create(null);
      names.forEach((name, i) => {
        values[name] = i < r.fields.length ? decodeField(r.fields[i]) : null;
      });
      const malformed = r.malformed ?? (r.fields.length > names.length ? `${r.fields.length} fields, header has ${names.length}` : null);
      yield { values, malformed, offset: r.offset };
    }
    if (names === null) throw new CapfiltError('INPUT_COLUMN_MISSING', `${file}: empty file, no header row`, { file });
    return;
  }
  for await (const line of lines(fileChunks(file, seek ?? 0, o.s3), seek ?? 0)) {
    const text = decodeField(line.bytes);
    if (format === 'txt') {
      yield { values: { [o.urlCol]: typeof text === 'string' ? text.trim() : text }, malformed: null, offset: line.offset };
      continue;
    }
    if (typeof text !== 'string') {
      yield { values: { [o.urlCol]: text }, malformed: null, offset: line.offset };
      continue;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (e) {
      yield { values: null, malformed: `not JSON: ${(e as Error).message}`, offset: line.offset };
      continue;
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
      yield { values: null, malformed: 'JSON line is not an object', offset: line.offset };
      continue;
    }
    yield { values: parsed as Record<string, unknown>, malformed: null, offset: line.offset };
  }
}

const fatal = new TextDecoder('utf-8', { fatal: true });
function decodeField(b: Buffer): unknown {
  try {
    return fatal.decode(b);
  } catch {
    return new InvalidUtf8(b);
  }
}

async function readHeader(file: string, delim: number, o: ReaderOptions): Promise<string[]> {
  for await (const r of delimitedRecords(fileChunks(file, 0, o.s3), delim, 0, o.maxRecordBytes)) return headerNames(file, r.fields, o);
  throw new CapfiltError('INPUT_COLUMN_MISSING', `${file}: empty file, no header row`, { file });
}

function headerNames(file: string, fields: Buffer[], o: ReaderOptions): string[] {
  const names = fields.map((f) => f.toString('utf8').replace(/^\uFEFF/, '').trim());
  for (const col of [o.urlCol, o.captionCol]) {
    if (col !== null && !names.includes(col)) {
      throw new CapfiltError('INPUT_COLUMN_MISSING', `${file}: no column "${col}" in the header (columns: ${names.join(', ')})`, { file, column: col });
    }
  }
  return names;
}

/** Offsets of every data record of a text file, streamed (no decoding or validation). */
async function* textOffsets(file: string, format: InputFormat, o: ReaderOptions): AsyncGenerator<number> {
  if (format === 'csv' || format === 'tsv') {
    let header = true;
    for await (const r of delimitedRecords(fileChunks(file, 0, o.s3), format === 'csv' ? 44 : 9, 0, o.maxRecordBytes)) {
      if (header) header = false;
      else yield r.offset;
    }
    return;
  }
  for await (const line of lines(fileChunks(file, 0, o.s3), 0)) yield line.offset;
}

/** Number of data rows: parquet from its footer; text formats by one streaming scan. */
export async function countRows(file: string, options: Partial<ReaderOptions> = {}): Promise<number> {
  const o = withDefaults(options);
  const format = detectFormat(file, o.format);
  if (format === 'parquet') return parquetRowCount(file, o.s3);
  let n = 0;
  for await (const _ of textOffsets(file, format, o)) n++;
  return n;
}

/**
 * Splits a file into ranges of `shardRows` rows. Text files get the byte offset of each range's
 * first record (null for gzip, which cannot seek); readRows(file, o, range) then starts there.
 */
export async function planShards(file: string, shardRows: number, options: Partial<ReaderOptions> = {}): Promise<RowRange[]> {
  if (!(shardRows >= 1)) throw new RangeError(`shardRows must be >= 1, got ${shardRows}`);
  const o = withDefaults(options);
  const format = detectFormat(file, o.format);
  const ranges: RowRange[] = [];
  if (format === 'parquet') {
    const total = await parquetRowCount(file, o.s3);
    for (let s = 0; s < total; s += shardRows) ranges.push({ rowStart: s, rowEnd: Math.min(total, s + shardRows), byteOffset: null });
    return ranges;
  }
  const seekable = !isGzip(file);
  let n = 0;
  for await (const offset of textOffsets(file, format, o)) {
    if (n % shardRows === 0) ranges.push({ rowStart: n, rowEnd: n, byteOffset: seekable ? offset : null });
    n++;
    ranges[ranges.length - 1].rowEnd = n;
  }
  return ranges;
}
