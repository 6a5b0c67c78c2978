import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects, type FileMetaData } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { CapfiltError } from '../../errors.ts';
import type { RawRecord, ReaderOptions } from './types.ts';
import { InvalidUtf8 } from './types.ts';

/**
 * Parquet input, read one row group at a time (hyparquet fetches only the byte ranges of the
 * requested columns and row groups), so memory is bounded by the largest row group, not the file.
 * Codecs: snappy and uncompressed natively, gzip/zstd/brotli/lz4 through hyparquet-compressors.
 */
const fatal = new TextDecoder('utf-8', { fatal: true });
const parsers = {
  stringFromBytes(bytes: Uint8Array): unknown {
    if (!bytes) return bytes;
    try {
      return fatal.decode(bytes);
    } catch {
      return new InvalidUtf8(bytes);
    }
  },
};

async function open(file: string): Promise<{ buf: Awaited<ReturnType<typeof asyncBufferFromFile>>; meta: FileMetaData }> {
  try {
    const buf = await asyncBufferFromFile(file);
    return { buf, meta: await parquetMetadataAsync(buf) };
  } catch (e) {
    throw new CapfiltError('INPUT_UNREADABLE', `${file}: not a readable parquet file (${(e as Error).message})`, { file }, { cause: e });
  }
}

export async function parquetRowCount(file: string): Promise<number> {
  return Number((await open(file)).meta.num_rows);
}

export async function* parquetRecords(file: string, o: ReaderOptions, rowStart = 0, rowEnd = Infinity): AsyncGenerator<RawRecord> {
  const { buf, meta } = await open(file);
  const present = new Set(meta.schema.slice(1).map((s) => s.name));
  const wanted = [o.urlCol, o.captionCol, o.trustedCol, ...o.saveAdditionalColumns].filter((c): c is string => c !== null);
  for (const col of [o.urlCol, o.captionCol]) {
    if (col !== null && !present.has(col)) {
      throw new CapfiltError('INPUT_COLUMN_MISSING', `${file}: no column "${col}" (columns: ${[...present].join(', ')})`, { file, column: col });
    }
  }
  const columns = [...new Set(wanted.filter((c) => present.has(c)))];
  let groupStart = 0;
  for (const group of meta.row_groups) {
    const groupEnd = groupStart + Number(group.num_rows);
    const from = Math.max(rowStart, groupStart);
    const to = Math.min(rowEnd, groupEnd);
    if (from < to) {
      let rows: Record<string, unknown>[];
      try {
        rows = await parquetReadObjects({ file: buf, metadata: meta, columns, rowStart: from, rowEnd: to, compressors, parsers });
      } catch (e) {
        throw new CapfiltError('INPUT_UNREADABLE', `${file}: rows ${from}-${to}: ${(e as Error).message}`, { file }, { cause: e });
      }
      // A corrupt page can decode to fewer rows than the footer promises: say so, never drop them.
      if (rows.length !== to - from) throw new CapfiltError('INPUT_UNREADABLE', `${file}: rows ${from}-${to}: decoded ${rows.length} rows, the file's metadata says ${to - from}`, { file });
      for (const values of rows) yield { values, malformed: null, offset: -1 };
    }
    groupStart = groupEnd;
    if (groupStart >= rowEnd) break;
  }
}
