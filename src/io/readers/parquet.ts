import { randomUUID } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { Worker } from 'node:worker_threads';
import { asyncBufferFromFile, parquetMetadataAsync, type AsyncBuffer, type FileMetaData, type RowGroup } from 'hyparquet';
import { realClock, type Clock } from '../../core/clock.ts';
import { CapfiltError, isCapfiltError } from '../../core/errors.ts';
import type { ObjectStore } from '../storage/object-store.ts';
import type { S3Options } from '../storage/s3-client.ts';
import { isS3Url } from '../storage/s3-url.ts';
import { s3Object } from './byte-source.ts';
import type { RawRecord, ReaderOptions } from './types.ts';
import { InvalidUtf8 } from './types.ts';

/**
 * Parquet input, read one row group at a time (hyparquet fetches only the byte ranges of the
 * requested columns and row groups), so memory is bounded by the largest row group, not the file.
 * Codecs: snappy and uncompressed natively, gzip/zstd/brotli/lz4 through hyparquet-compressors.
 *
 * The footer is read here; the row groups are decoded in a worker thread (parquet-thread.mjs,
 * one per process, shared by all readers), because a corrupt page can make hyparquet's
 * synchronous decode loop forever (two small splices in a valid file did) and a loop in this
 * thread could not be stopped. Each decode gets a time limit that grows with the compressed size
 * of the columns it reads; past it the thread is terminated (a new one serves the next decode)
 * and the file's rows not yet read are yielded failed with INPUT_UNREADABLE, so every row the
 * footer counts is still accounted for. A row group whose decode fails, or whose columns cover
 * another number of rows than the footer says, fails its own rows the same way, and reading goes
 * on with the next row group.
 *
 * An s3:// file is read the same way through ranged GETs: the footer here (hyparquet's
 * AsyncBuffer over ObjectStore.readRange), and for each row group this thread fetches the byte
 * ranges of the requested column chunks and hands them to the decoding thread (transferred, not
 * copied) with that one row group's metadata. The thread therefore never talks to S3: the time
 * limit measures decoding alone, so a slow or retried GET cannot be mistaken for a decoder that
 * hangs (which would fail the rest of the file), and S3 failures keep their S3_* codes and stop
 * the read rather than failing rows that were never seen.
 */

/** The least time one row group may take to decode (a thread start included). */
export const PARQUET_DECODE_FLOOR_MS = 10_000;
/**
 * What the time limit grants per byte of compressed column data read: 1 MB/s, far below
 * hyparquet's speed even on a loaded machine, so only a decoder that no longer advances hits it.
 */
export const PARQUET_DECODE_BYTES_PER_MS = 1000;

export function parquetDecodeLimitMs(compressedBytes: number, floorMs = PARQUET_DECODE_FLOOR_MS): number {
  return floorMs + Math.ceil(compressedBytes / PARQUET_DECODE_BYTES_PER_MS);
}

/** An opened parquet file: its footer, size, and for S3 the store its bytes come from. */
interface Opened {
  meta: FileMetaData;
  size: number;
  version: string;
  remote: { store: ObjectStore; name: string } | null;
}

/** hyparquet's view of an S3 object: every slice is one ranged GET. */
function rangedBuffer(store: ObjectStore, name: string, size: number): AsyncBuffer {
  return {
    byteLength: size,
    slice: async (start, end = size) => {
      const b = await store.readRange(name, start, end);
      return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
    },
  };
}

async function open(file: string, s3: S3Options | undefined): Promise<Opened> {
  let meta: FileMetaData;
  let size: number;
  let version: string;
  let remote: Opened['remote'] = null;
  try {
    if (isS3Url(file)) {
      remote = s3Object(file, s3);
      const n = await remote.store.size(remote.name);
      if (n === null) throw new CapfiltError('S3_NO_SUCH_KEY', `${file}: no such object`, { url: file });
      size = n;
      version = String(n);
      meta = await parquetMetadataAsync(rangedBuffer(remote.store, remote.name, size));
    } else {
      const st = await stat(file);
      size = st.size;
      version = `${st.size}:${st.mtimeMs}`;
      meta = await parquetMetadataAsync(await asyncBufferFromFile(file));
    }
  } catch (e) {
    if (isCapfiltError(e) && (e.code.startsWith('S3_') || e.code === 'CONFIG_INVALID')) throw e;
    throw new CapfiltError('INPUT_UNREADABLE', `${file}: not a readable parquet file (${(e as Error).message})`, { file }, { cause: e });
  }
  // The footer states the row count twice (file and row groups); counting and reading must agree.
  const total = Number(meta.num_rows);
  const groups = meta.row_groups.map((g) => Number(g.num_rows));
  const sum = groups.reduce((a, b) => a + b, 0);
  if (!Number.isSafeInteger(total) || total < 0 || groups.some((n) => !Number.isSafeInteger(n) || n < 0) || sum !== total) {
    throw new CapfiltError('INPUT_UNREADABLE', `${file}: corrupt parquet footer: ${meta.num_rows} rows, but its ${groups.length} row groups hold ${sum}`, { file });
  }
  return { meta, size, version, remote };
}

/**
 * Unrequested bytes between two column chunks that are still fetched in one GET rather than two.
 * It must be at least hyparquet's own merge gap (8 KiB), so every range it asks the thread's
 * buffer for lies inside one fetched range.
 */
const FETCH_GAP = 64 * 1024;

/** The byte ranges of a row group's `columns`, within the file, merged across small gaps. */
export function columnRanges(group: RowGroup, columns: string[], size: number): Array<[number, number]> {
  const ranges: Array<[number, number]> = [];
  for (const c of group.columns) {
    const m = c.meta_data;
    if (!m || !columns.includes(m.path_in_schema[0])) continue;
    const start = Number(m.dictionary_page_offset || m.data_page_offset);
    const end = start + Number(m.total_compressed_size);
    // A corrupt footer's offsets are not trusted beyond the file; the decoder then fails on what is missing.
    const a = Math.max(0, Math.min(size, start));
    const b = Math.max(a, Math.min(size, end));
    if (Number.isFinite(a) && Number.isFinite(b) && b > a) ranges.push([a, b]);
  }
  ranges.sort((x, y) => x[0] - y[0]);
  const merged: Array<[number, number]> = [];
  for (const r of ranges) {
    const last = merged[merged.length - 1];
    if (last && r[0] <= last[1] + FETCH_GAP) last[1] = Math.max(last[1], r[1]);
    else merged.push([r[0], r[1]]);
  }
  return merged;
}

export async function parquetRowCount(file: string, s3?: S3Options): Promise<number> {
  return Number((await open(file, s3)).meta.num_rows);
}

/** A decoded row range: `cells[c][i]` is column c of row i. */
type Decoded = { length: number; cells: unknown[][]; invalid: Uint8Array[] };
type Reply = ({ id: number } & Decoded) | { id: number; error: string };

/** A decode that had to be stopped (time limit) or whose thread died; the file is not read further. */
class DecodeStopped extends Error {}

interface DecodeJob {
  id: number;
  /** What the thread decodes (see parquet-thread.mjs): a local file by path, or fetched bytes with their row group's metadata. */
  request: Record<string, unknown>;
  /** Buffers moved to the thread with the request. */
  transfer: ArrayBuffer[];
  limitMs: number;
  clock: Clock;
  /** The compressed column data the limit was granted for, named when it runs out. */
  bytes: number;
  resolve(d: Decoded): void;
  reject(e: Error): void;
}

/** Marks invalid UTF-8 cells in the thread's replies (see parquet-thread.mjs). */
const MARKER = `\u0000capfilt-invalid-utf8-${randomUUID()}:`;

/**
 * The process's decoding thread: one job at a time, in arrival order; its time limit runs from
 * when the job is handed to the thread. A stopped or dead thread is replaced for the next job.
 * Sharing one thread keeps hyparquet's compiled code warm across files and row groups.
 */
class Decoder {
  private worker: Worker | null = null;
  private readonly queue: DecodeJob[] = [];
  private current: { job: DecodeJob; limit: AbortController } | null = null;
  private nextId = 1;

  decode(job: Omit<DecodeJob, 'id' | 'resolve' | 'reject'>): Promise<Decoded> {
    return new Promise<Decoded>((resolve, reject) => {
      this.queue.push({ ...job, id: this.nextId++, resolve, reject });
      this.pump();
    });
  }

  private spawn(): Worker {
    const w = new Worker(new URL('./parquet-thread.mjs', import.meta.url), { workerData: { marker: MARKER } });
    w.on('message', (m: Reply) => {
      const c = this.current;
      if (!c || c.job.id !== m.id) return;
      this.finish();
      if ('error' in m) c.job.reject(new Error(m.error));
      else c.job.resolve({ length: m.length, cells: m.cells, invalid: m.invalid });
    });
    const die = (why: string) => {
      if (this.worker !== w) return;
      this.worker = null;
      const c = this.current;
      this.finish();
      c?.job.reject(new DecodeStopped(why));
    };
    w.on('error', (e) => die(`the decoding thread failed: ${e.message}`));
    w.on('exit', (code) => die(`the decoding thread exited (code ${code})`));
    return w;
  }

  private finish(): void {
    this.current?.limit.abort();
    this.current = null;
    // Idle, the thread must not keep the process alive.
    this.worker?.unref();
    queueMicrotask(() => this.pump());
  }

  private pump(): void {
    if (this.current) return;
    const job = this.queue.shift();
    if (!job) return;
    const w = (this.worker ??= this.spawn());
    const limit = new AbortController();
    job.clock.sleep(job.limitMs, limit.signal).then(() => {
      if (this.current?.job !== job) return;
      this.worker = null;
      this.finish();
      void w.terminate();
      job.reject(new DecodeStopped(`decoding did not finish within ${(job.limitMs / 1000).toFixed(1)} s (the limit for ${job.bytes} bytes of compressed column data); the decoder was stopped`));
    }, () => undefined);
    this.current = { job, limit };
    w.ref();
    w.postMessage({ id: job.id, ...job.request }, job.transfer);
  }
}

let decoder: Decoder | null = null;

/** Turns the thread's copy of a cell back into what the validator expects (InvalidUtf8 marks). */
function restore(v: unknown, d: Decoded): unknown {
  if (typeof v === 'string') return v.charCodeAt(0) === 0 && v.startsWith(MARKER) ? new InvalidUtf8(d.invalid[Number(v.slice(MARKER.length))]) : v;
  if (Array.isArray(v)) return v.map((x) => restore(x, d));
  if (v !== null && typeof v === 'object' && !(v instanceof Date) && !ArrayBuffer.isView(v)) {
    const o: Record<string, unknown> = Object.create(null);
    for (const [k, x] of Object.entries(v)) o[k] = restore(x, d);
    return o;
  }
  return v;
}

async function fetchRanges(store: ObjectStore, name: string, ranges: Array<[number, number]>): Promise<Array<{ start: number; data: ArrayBuffer }>> {
  return Promise.all(ranges.map(async ([a, b]) => {
    const buf = await store.readRange(name, a, b);
    return { start: a, data: buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer };
  }));
}

function* unreadable(from: number, to: number, detail: string): Generator<RawRecord> {
  for (let i = from; i < to; i++) yield { values: null, malformed: detail, malformedCode: 'INPUT_UNREADABLE', offset: -1 };
}

export async function* parquetRecords(file: string, o: ReaderOptions, rowStart = 0, rowEnd = Infinity): AsyncGenerator<RawRecord> {
  const { meta, size, version, remote } = await open(file, o.s3);
  const present = new Set(meta.schema.slice(1).map((s) => s.name));
  const wanted = [o.urlCol, o.captionCol, o.trustedCol, ...o.saveAdditionalColumns].filter((c): c is string => c !== null);
  for (const col of [o.urlCol, o.captionCol]) {
    if (col !== null && !present.has(col)) {
      throw new CapfiltError('INPUT_COLUMN_MISSING', `${file}: no column "${col}" (columns: ${[...present].join(', ')})`, { file, column: col });
    }
  }
  const columns = [...new Set(wanted.filter((c) => present.has(c)))];
  // Once a decode had to be stopped, the rest of the file is not trusted to decode either.
  let stopped: string | null = null;
  let groupStart = 0;
  for (const group of meta.row_groups) {
    const groupEnd = groupStart + Number(group.num_rows);
    const from = Math.max(rowStart, groupStart);
    const to = Math.min(rowEnd, groupEnd);
    if (from < to) {
      if (stopped) {
        yield* unreadable(from, to, `${file}: not read: ${stopped}`);
      } else {
        // The footer's sizes are not trusted further than the file's own size.
        const stated = group.columns.reduce((n, c) => n + (c.meta_data && columns.includes(c.meta_data.path_in_schema[0]) ? Number(c.meta_data.total_compressed_size) : 0), 0);
        const bytes = Number.isFinite(stated) && stated > 0 ? Math.min(size, stated) : size;
        const limitMs = parquetDecodeLimitMs(bytes, o.parquetDecodeFloorMs);
        let decoded: Decoded | null = null;
        let failure: string | null = null;
        try {
          let request: DecodeJob['request'] = { file, version, columns, rowStart: from, rowEnd: to };
          let transfer: ArrayBuffer[] = [];
          if (remote) {
            // Fetch failures are thrown from here (S3_* codes), outside the decode and its time limit.
            const chunks = await fetchRanges(remote.store, remote.name, columnRanges(group, columns, size));
            transfer = chunks.map((c) => c.data);
            const one = { ...meta, num_rows: group.num_rows, row_groups: [group] };
            request = { meta: one, chunks, size, columns, rowStart: from - groupStart, rowEnd: to - groupStart };
          }
          decoded = await (decoder ??= new Decoder()).decode({ request, transfer, limitMs, bytes, clock: o.clock ?? realClock });
          // A corrupt page can decode to another number of rows than the footer promises: never drop or invent rows.
          if (decoded.length !== to - from) failure = `decoded ${decoded.length} rows, the file's metadata says ${to - from}`;
        } catch (e) {
          if (isCapfiltError(e) && e.code.startsWith('S3_')) throw e;
          failure = (e as Error).message;
          if (e instanceof DecodeStopped) stopped = `rows ${from}-${to}: ${failure}`;
        }
        if (failure !== null || !decoded) {
          yield* unreadable(from, to, `${file}: rows ${from}-${to} cannot be decoded: ${failure}`);
        } else {
          // Cells need restoring only where the thread marked invalid UTF-8.
          const marked = decoded.invalid.length > 0;
          const { cells } = decoded;
          for (let r = 0; r < decoded.length; r++) {
            const values: Record<string, unknown> = Object.create(null);
            for (let c = 0; c < columns.length; c++) values[columns[c]] = marked ? restore(cells[c][r], decoded) : cells[c][r];
            yield { values, malformed: null, offset: -1 };
          }
        }
      }
    }
    groupStart = groupEnd;
    if (groupStart >= rowEnd) break;
  }
}
