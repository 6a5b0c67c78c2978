/**
 * Parquet reading: the reader as it is (row groups decoded in a worker thread under a time
 * limit, rows copied back to the main thread) against the same work done in the main thread,
 * the way the reader worked before (hyparquet's decode of each row group, then the same
 * validation), side by side on one generated file, alternating, several rounds. Prints one JSON
 * object: median wall time of each, their ratio, rows per second, and the process's CPU time
 * (all threads: what the copy between the threads costs on top of the decode).
 *
 *   npx tsx bench/parquet-read.ts                 200,000 rows in row groups of 20,000
 *   BENCH_ROWS=50000 BENCH_GROUP_ROWS=5000 BENCH_ROUNDS=3 npx tsx bench/parquet-read.ts
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { parquetWriteFile } from 'hyparquet-writer';
import { readRows } from '../src/io/readers/index.ts';
import { DEFAULT_READER_OPTIONS, InvalidUtf8, type InputRow, type RawRecord, type ReaderOptions } from '../src/io/readers/types.ts';
import { toInputRow } from '../src/io/readers/validate.ts';

const ROWS = Number(process.env.BENCH_ROWS ?? 200_000);
const GROUP_ROWS = Number(process.env.BENCH_GROUP_ROWS ?? 20_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const O: ReaderOptions = { ...DEFAULT_READER_OPTIONS, saveAdditionalColumns: ['id', 'width'] };

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

/**
 * The previous reader: decode each row group in this thread, then validate, through the same
 * layers of async generators as readRows (readRows → rawRecords → parquetRecords).
 */
async function* previousRecords(file: string): AsyncGenerator<RawRecord> {
  const buf = await asyncBufferFromFile(file);
  const meta = await parquetMetadataAsync(buf);
  const columns = ['url', 'caption', 'id', 'width'];
  let start = 0;
  for (const g of meta.row_groups) {
    const end = start + Number(g.num_rows);
    const rows = await parquetReadObjects({ file: buf, metadata: meta, columns, rowStart: start, rowEnd: end, compressors, parsers });
    for (const values of rows) yield { values, malformed: null, offset: -1 };
    start = end;
  }
}

async function* previousRaw(file: string): AsyncGenerator<RawRecord> {
  yield* previousRecords(file);
}

async function* previousReadRows(file: string): AsyncGenerator<InputRow> {
  let index = 0;
  for await (const rec of previousRaw(file)) yield toInputRow(rec, index++, O);
}

async function inThread(file: string): Promise<number> {
  let n = 0;
  for await (const r of previousReadRows(file)) if (r.url !== null && n++ < 0) throw new Error('unreachable');
  return n;
}

async function threaded(file: string): Promise<number> {
  let n = 0;
  for await (const r of readRows(file, O)) if (r.url !== null && n++ < 0) throw new Error('unreachable');
  return n;
}

async function time(fn: (f: string) => Promise<number>, file: string): Promise<{ ms: number; cpuMs: number }> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const n = await fn(file);
  const ms = performance.now() - t0;
  const c = process.cpuUsage(c0);
  if (n !== ROWS) throw new Error(`read ${n} rows, expected ${ROWS}`);
  return { ms, cpuMs: (c.user + c.system) / 1000 };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const dir = mkdtempSync(join(tmpdir(), 'capfilt-bench-parquet-'));
try {
  const file = join(dir, 'input.parquet');
  parquetWriteFile({
    filename: file,
    rowGroupSize: GROUP_ROWS,
    columnData: [
      { name: 'url', data: Array.from({ length: ROWS }, (_, i) => `https://img${i % 97}.example.com/photos/${i}/large.jpg?size=${i % 7}`), type: 'STRING' },
      { name: 'caption', data: Array.from({ length: ROWS }, (_, i) => `a photo of item ${i} on a ${['red', 'green', 'blue'][i % 3]} table, taken outdoors in the afternoon`), type: 'STRING' },
      { name: 'id', data: Array.from({ length: ROWS }, (_, i) => BigInt(i)), type: 'INT64' },
      { name: 'width', data: Array.from({ length: ROWS }, (_, i) => 200 + (i % 800)), type: 'INT32' },
    ],
  });
  // One unmeasured pass each, so file cache and JIT are warm for both.
  await time(inThread, file);
  await time(threaded, file);
  const a: Array<{ ms: number; cpuMs: number }> = [];
  const b: Array<{ ms: number; cpuMs: number }> = [];
  for (let r = 0; r < ROUNDS; r++) {
    if (r % 2 === 0) {
      a.push(await time(inThread, file));
      b.push(await time(threaded, file));
    } else {
      b.push(await time(threaded, file));
      a.push(await time(inThread, file));
    }
  }
  const inMs = median(a.map((x) => x.ms));
  const thMs = median(b.map((x) => x.ms));
  process.stdout.write(
    `${JSON.stringify({
      rows: ROWS, rowGroupRows: GROUP_ROWS, fileBytes: statSync(file).size, rounds: ROUNDS, loadavg1: Number(loadavg()[0].toFixed(2)),
      inThreadMs: a.map((x) => Math.round(x.ms)), threadedMs: b.map((x) => Math.round(x.ms)),
      medianInThreadMs: Math.round(inMs), medianThreadedMs: Math.round(thMs), ratio: Number((thMs / inMs).toFixed(3)),
      rowsPerSecInThread: Math.round(ROWS / (inMs / 1000)), rowsPerSecThreaded: Math.round(ROWS / (thMs / 1000)),
      cpuMsInThread: Math.round(median(a.map((x) => x.cpuMs))), cpuMsThreaded: Math.round(median(b.map((x) => x.cpuMs))),
    })}\n`,
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
