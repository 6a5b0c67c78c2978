import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { asyncBufferFromFile, parquetMetadataAsync } from 'hyparquet';
import { parquetWriteFile } from 'hyparquet-writer';
import { afterAll, describe, expect, it } from 'vitest';
import { countRows, readRows, type InputRow, type ReaderOptions } from '../../../../src/io/readers/index.ts';
import { PARQUET_DECODE_FLOOR_MS, parquetDecodeLimitMs } from '../../../../src/io/readers/parquet.ts';
import { ManualClock } from '../../../helpers/manual-clock.ts';
import { HANGING_SPLICES, VALID_ROWS, mutate, writeValidParquet } from '../../../helpers/parquet-mutations.ts';

const dir = mkdtempSync(join(tmpdir(), 'capfilt-parquet-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function all(path: string, o: Partial<ReaderOptions> = {}): Promise<InputRow[]> {
  const rows: InputRow[] = [];
  for await (const r of readRows(path, o)) rows.push(r);
  return rows;
}

/**
 * Reads a file whose decode never ends on a manual clock: the reader must still be waiting 1 ms
 * before its decode limit, and give up at the limit. Returns the rows and the limits it waited.
 */
async function allOnClock(path: string, o: Partial<ReaderOptions>): Promise<{ rows: InputRow[]; limits: number[] }> {
  const clock = new ManualClock();
  let settled = false;
  const reading = all(path, { ...o, clock }).finally(() => { settled = true; });
  await clock.whenSleeping();
  const [limit] = clock.deadlines;
  await clock.advance(limit - 1);
  expect(settled).toBe(false);
  await clock.advance(1);
  return { rows: await reading, limits: clock.sleeps };
}

/** 30 rows in 3 row groups of 10. */
function threeGroups(name: string): { path: string; bytes: Uint8Array } {
  const path = join(dir, name);
  parquetWriteFile({
    filename: path,
    rowGroupSize: 10,
    columnData: [
      { name: 'url', data: Array.from({ length: 30 }, (_, i) => `http://a.example/${i}.jpg`), type: 'STRING' },
      { name: 'caption', data: Array.from({ length: 30 }, (_, i) => `caption ${i}`), type: 'STRING' },
    ],
  });
  return { path, bytes: new Uint8Array(readFileSync(path)) };
}

describe('parquet reader: decoding in a thread with a time limit', () => {
  it('a file whose decode never ends (two splices) fails every row with INPUT_UNREADABLE once the limit is reached', async () => {
    const valid = writeValidParquet(join(dir, 'valid.parquet'));
    const path = join(dir, 'hanging.parquet');
    writeFileSync(path, mutate(valid, HANGING_SPLICES));
    expect(await countRows(path)).toBe(VALID_ROWS);
    const floorMs = 1500;
    // On the real clock: the one check here that a decode that truly never ends is stopped.
    const t0 = Date.now();
    const rows = await all(path, { parquetDecodeFloorMs: floorMs, saveAdditionalColumns: ['extra'] });
    const ms = Date.now() - t0;
    expect(rows.map((r) => r.rowIndex)).toEqual(Array.from({ length: VALID_ROWS }, (_, i) => i));
    for (const r of rows) {
      expect(r.invalid?.code).toBe('INPUT_UNREADABLE');
      expect(r.invalid?.detail).toMatch(/rows 0-40 cannot be decoded: decoding did not finish within 1\.5 s \(the limit for \d+ bytes of compressed column data\); the decoder was stopped/);
    }
    expect(ms).toBeGreaterThanOrEqual(floorMs);
    expect(ms).toBeLessThan(floorMs + 5000);
  });

  it('a row group that cannot be decoded fails its own rows; the row groups after it are read', async () => {
    const { bytes } = threeGroups('groups.parquet');
    const meta = await parquetMetadataAsync(await asyncBufferFromFile(join(dir, 'groups.parquet')));
    const at = Number(meta.row_groups[1].columns[0].meta_data!.data_page_offset);
    const broken = Uint8Array.from(bytes).fill(0xff, at, at + 4);
    const path = join(dir, 'group-broken.parquet');
    writeFileSync(path, broken);
    const rows = await all(path);
    expect(rows).toHaveLength(30);
    expect(rows.map((r) => r.invalid?.code ?? 'ok')).toEqual([...Array(10).fill('ok'), ...Array(10).fill('INPUT_UNREADABLE'), ...Array(10).fill('ok')]);
    expect(rows[10].invalid?.detail).toMatch(/^row 10: .*rows 10-20 cannot be decoded: /);
    expect(rows[25]).toMatchObject({ rowIndex: 25, url: 'http://a.example/25.jpg', text: 'caption 25' });
  });

  it('once a decode had to be stopped, the rest of the file fails without being decoded; the next file is read', async () => {
    // Two row groups; the first holds the 40 rows of the valid file, byte for byte where the
    // hanging splices land (offsets 292 and 705), the second the same rows again.
    const path = join(dir, 'two-groups.parquet');
    const rows80 = Array.from({ length: 2 * VALID_ROWS }, (_, i) => i % VALID_ROWS);
    parquetWriteFile({
      filename: path,
      rowGroupSize: VALID_ROWS,
      columnData: [
        { name: 'url', data: rows80.map((i) => (i % 9 === 4 ? 'ftp://x' : `http://a.example/${i}.jpg`)), type: 'STRING' },
        { name: 'caption', data: rows80.map((i) => `caption ${i} ${'w'.repeat(i)}`), type: 'STRING' },
        { name: 'extra', data: rows80, type: 'INT32' },
      ],
    });
    const b = Buffer.from(readFileSync(path));
    expect(b.subarray(0, 889).equals(Buffer.from(writeValidParquet(join(dir, 'valid2.parquet')).subarray(0, 889)))).toBe(true);
    b.set([150, 99], 292);
    b.set([242], 705);
    writeFileSync(path, b);
    const { rows, limits } = await allOnClock(path, { parquetDecodeFloorMs: 1000 });
    expect(rows).toHaveLength(80);
    // Only the first row group was given to the decoder, limited to the floor plus 1 ms per kB.
    expect(limits).toHaveLength(1);
    expect(limits[0]).toBeGreaterThanOrEqual(1000);
    expect(limits[0]).toBeLessThan(1100);
    expect(rows.every((r) => r.invalid?.code === 'INPUT_UNREADABLE')).toBe(true);
    expect(rows[0].invalid?.detail).toMatch(/rows 0-40 cannot be decoded: decoding did not finish within 1\.0 s/);
    expect(rows[79].invalid?.detail).toMatch(/^row 79: .*: not read: rows 0-40: decoding did not finish within 1\.0 s/);
    // The stopped thread is replaced: the next file decodes.
    expect((await all(join(dir, 'valid2.parquet'))).filter((r) => r.invalid?.code === 'INPUT_URL_INVALID')).toHaveLength(4);
  });

  it('grants 10 s plus 1 ms per kB of compressed column data', () => {
    expect(PARQUET_DECODE_FLOOR_MS).toBe(10_000);
    expect(parquetDecodeLimitMs(0)).toBe(10_000);
    expect(parquetDecodeLimitMs(64 * 1024 * 1024)).toBe(10_000 + 67_109);
    expect(parquetDecodeLimitMs(2500, 500)).toBe(503);
  });

  it('brings invalid UTF-8 and a column named __proto__ across the thread intact', async () => {
    const path = join(dir, 'cells.parquet');
    parquetWriteFile({
      filename: path,
      codec: 'UNCOMPRESSED',
      columnData: [
        { name: 'url', data: ['http://a.example/0.jpg', 'http://a.example/1.jpg'], type: 'STRING' },
        { name: 'caption', data: ['fine', 'QQQQ'], type: 'STRING' },
        { name: '__proto__', data: ['p0', 'p1'], type: 'STRING' },
      ],
    });
    // Uncompressed, the caption's bytes stand in the file as they are: make "QQQQ" invalid UTF-8.
    const b = Buffer.from(readFileSync(path));
    const at = b.indexOf('QQQQ');
    expect(at).toBeGreaterThan(0);
    b.set([0xff, 0xfe, 0xc3, 0x28], at);
    writeFileSync(path, b);
    const rows = await all(path, { saveAdditionalColumns: ['__proto__'] });
    expect(rows[0]).toMatchObject({ url: 'http://a.example/0.jpg', text: 'fine', invalid: null });
    expect(Object.entries(rows[0].extra)).toEqual([['__proto__', 'p0']]);
    expect(rows[1].invalid).toEqual({ code: 'INPUT_ENCODING_INVALID', detail: 'row 1: column "caption" is not valid UTF-8' });
    expect(Object.entries(rows[1].extra)).toEqual([['__proto__', 'p1']]);
  });
});
