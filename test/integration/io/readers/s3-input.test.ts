import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { parquetMetadataAsync, asyncBufferFromFile } from 'hyparquet';
import { parquetWriteFile } from 'hyparquet-writer';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { countRows, listInputFiles, planShards, readRows, type InputRow, type ReaderOptions, type RowRange } from '../../../../src/io/readers/index.ts';
import { columnRanges } from '../../../../src/io/readers/parquet.ts';
import { closeS3Clients } from '../../../../src/io/storage/s3-client.ts';
import { startS3Server, type TestS3 } from '../../../helpers/s3-server.ts';

/**
 * s3:// input read through a real S3-compatible server (s3rver) gives exactly the rows the same
 * file gives from a local folder: whole files, and shard ranges planned on S3 (byte offsets for
 * text, row indexes for parquet), so a worker seeking into an object reads what it would locally.
 */
let s3: TestS3;
const dir = mkdtempSync(join(tmpdir(), 'capfilt-s3-input-'));
const BUCKET = 'capfilt-input';
const local = (name: string) => join(dir, name);
const remote = (name: string) => `s3://${BUCKET}/data/${name}`;

async function all(path: string, o: Partial<ReaderOptions>, range?: RowRange): Promise<InputRow[]> {
  const rows: InputRow[] = [];
  for await (const r of readRows(path, o, range)) rows.push(r);
  return rows;
}

const ROWS = 1200;
function csvText(): string {
  const lines = ['url,caption,id'];
  for (let i = 0; i < ROWS; i++) {
    // Quoted newlines, a bad URL and an empty line now and then: offsets must land on record starts.
    const url = i % 97 === 5 ? 'ftp://bad/x' : `http://img.example/${i}.jpg`;
    lines.push(`${url},"caption ${i}${i % 13 === 0 ? ',\nsecond line' : ''}",${i}`);
    if (i % 101 === 7) lines.push('');
  }
  return `${lines.join('\n')}\n`;
}
function jsonlText(): string {
  return Array.from({ length: ROWS }, (_, i) => (i % 89 === 3 ? '{broken' : JSON.stringify({ url: `https://j.example/${i}.png`, caption: `json ${i} é`, id: i }))).join('\n');
}

beforeAll(async () => {
  s3 = await startS3Server();
  await s3.createBucket(BUCKET);
  const files: Record<string, Buffer> = {
    'a.csv': Buffer.from(csvText()),
    'b.csv.gz': gzipSync(csvText()),
    'c.jsonl': Buffer.from(jsonlText()),
    'e.txt': Buffer.from(Array.from({ length: 50 }, (_, i) => `http://t.example/${i}.gif`).join('\n')),
  };
  for (const [name, data] of Object.entries(files)) writeFileSync(local(name), data);
  // 3000 rows in 10 row groups, with a wide column the reads below never ask for.
  parquetWriteFile({
    filename: local('d.parquet'),
    rowGroupSize: 300,
    columnData: [
      { name: 'url', data: Array.from({ length: 3000 }, (_, i) => `http://p.example/${i}.jpg`), type: 'STRING' },
      // Hex of hashes: snappy cannot shrink it, so each row group's blob chunk (~120 KB) is wider than the fetch gap.
      { name: 'blob', data: Array.from({ length: 3000 }, (_, i) => Array.from({ length: 6 }, (_, k) => createHash('sha256').update(`${i}:${k}`).digest('hex')).join('')), type: 'STRING' },
      { name: 'caption', data: Array.from({ length: 3000 }, (_, i) => `parquet caption ${i}`), type: 'STRING' },
      { name: 'id', data: Array.from({ length: 3000 }, (_, i) => i), type: 'INT32' },
    ],
  });
  for (const name of [...Object.keys(files), 'd.parquet']) {
    await s3.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: `data/${name}`, Body: readFileSync(local(name)) }));
  }
  // Not input: a sub-prefix (a local folder input does not descend either), a dot file, another extension.
  for (const key of ['data/nested/x.csv', 'data/.hidden.csv', 'data/README.md']) {
    await s3.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: 'url,caption\nhttp://n/1.jpg,n\n' }));
  }
});
afterAll(async () => {
  closeS3Clients();
  await s3?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

describe('readers on s3:// input', () => {
  it('lists the input objects directly below a prefix in name order, or one object', async () => {
    const o = s3.options;
    const expected = ['a.csv', 'b.csv.gz', 'c.jsonl', 'd.parquet', 'e.txt'].map(remote);
    expect(await listInputFiles(`s3://${BUCKET}/data/`, o)).toEqual(expected);
    // Without the trailing "/", a key that is no object is read as a prefix.
    expect(await listInputFiles(`s3://${BUCKET}/data`, o)).toEqual(expected);
    expect(await listInputFiles(remote('d.parquet'), o)).toEqual([remote('d.parquet')]);
  });

  it.each([
    ['a.csv', { saveAdditionalColumns: ['id'] }],
    ['b.csv.gz', { saveAdditionalColumns: ['id'] }],
    ['c.jsonl', { saveAdditionalColumns: ['id'] }],
    ['d.parquet', { saveAdditionalColumns: ['id'] }],
    ['e.txt', { captionCol: null }],
  ] as Array<[string, Partial<ReaderOptions>]>)('%s: the same rows, count and shard plan as from a local file', async (name, opts) => {
    const o: Partial<ReaderOptions> = { ...opts, s3: s3.options };
    const want = await all(local(name), opts);
    expect(want.length).toBeGreaterThan(0);
    expect(await all(remote(name), o)).toEqual(want);
    expect(await countRows(remote(name), o)).toBe(want.length);
    const plan = await planShards(remote(name), 128, o);
    expect(plan).toEqual(await planShards(local(name), 128, opts));
    // Every shard read by itself from S3 (seeking to its byte offset where the format allows).
    const shards: InputRow[] = [];
    for (const range of plan) shards.push(...(await all(remote(name), o, range)));
    expect(shards).toEqual(want);
    if (name === 'a.csv' || name === 'c.jsonl') expect(plan.slice(1).every((r) => (r.byteOffset ?? 0) > 0)).toBe(true);
  });

  it('a parquet shard fetches the footer and its row group\'s requested columns, not the file', async () => {
    const size = readFileSync(local('d.parquet')).length;
    const meta = await parquetMetadataAsync(await asyncBufferFromFile(local('d.parquet')));
    const ranges = columnRanges(meta.row_groups[7], ['url', 'caption'], size);
    expect(ranges.length).toBeGreaterThan(0);
    const blob = meta.row_groups[7].columns.find((c) => c.meta_data?.path_in_schema[0] === 'blob')!.meta_data!;
    const blobStart = Number(blob.dictionary_page_offset || blob.data_page_offset);
    // The wide column between url and caption is not fetched.
    for (const [a, b] of ranges) expect(b <= blobStart || a >= blobStart + Number(blob.total_compressed_size)).toBe(true);

    // Bytes the client asks S3 for while one shard of rows 2100-2228 is read (the send is observed, not replaced).
    const send = vi.spyOn(S3Client.prototype, 'send');
    let fetched = 0;
    try {
      const rows = await all(remote('d.parquet'), { s3: s3.options }, { rowStart: 2100, rowEnd: 2228 });
      expect(rows.map((r) => r.url)).toEqual(Array.from({ length: 128 }, (_, i) => `http://p.example/${2100 + i}.jpg`));
      for (const [cmd] of send.mock.calls) {
        if (!(cmd instanceof GetObjectCommand)) continue;
        const m = /^bytes=(\d+)-(\d+)$/.exec(cmd.input.Range ?? '');
        expect(m, `an unranged GET of ${cmd.input.Key}`).not.toBeNull();
        fetched += Number(m![2]) - Number(m![1]) + 1;
      }
    } finally {
      send.mockRestore();
    }
    // The footer read ends up capped at the file (512 KiB asked); the shard's row group adds its url and caption chunks.
    const footer = Math.min(size, 512 * 1024);
    expect(fetched).toBeLessThanOrEqual(footer + ranges.reduce((n, [a, b]) => n + b - a, 0));
    expect(size).toBeGreaterThan(1024 * 1024);
    expect(fetched).toBeLessThan(size / 2);
  });

  it('a parquet row group that cannot be decoded fails its own rows, as from a local file', async () => {
    const meta = await parquetMetadataAsync(await asyncBufferFromFile(local('d.parquet')));
    const at = Number(meta.row_groups[4].columns[0].meta_data!.data_page_offset);
    writeFileSync(local('broken.parquet'), Uint8Array.from(readFileSync(local('d.parquet'))).fill(0xff, at, at + 4));
    await s3.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'broken/broken.parquet', Body: readFileSync(local('broken.parquet')) }));
    const want = await all(local('broken.parquet'), {});
    const got = await all(`s3://${BUCKET}/broken/broken.parquet`, { s3: s3.options });
    const outcome = (rows: InputRow[]) => rows.map((r) => r.invalid?.code ?? r.url);
    expect(outcome(want).filter((c) => c === 'INPUT_UNREADABLE')).toHaveLength(300);
    expect(outcome(got)).toEqual(outcome(want));
  });

  it('a missing object, bucket or empty prefix is a coded error', async () => {
    const o = s3.options;
    await expect(listInputFiles(`s3://${BUCKET}/data/none.csv`, o)).rejects.toMatchObject({ code: 'S3_NO_SUCH_KEY' });
    await expect(listInputFiles('s3://no-such-bucket-here/data/', o)).rejects.toMatchObject({ code: 'S3_NO_SUCH_BUCKET' });
    await expect(listInputFiles(`s3://${BUCKET}/nothing/`, o)).rejects.toMatchObject({ code: 'INPUT_UNREADABLE' });
    await expect(countRows(`s3://${BUCKET}/data/none.parquet`, { s3: o })).rejects.toMatchObject({ code: 'S3_NO_SUCH_KEY' });
    await expect(all(`s3://${BUCKET}/data/none.jsonl`, { s3: o })).rejects.toMatchObject({ code: 'S3_NO_SUCH_KEY' });
    await expect(listInputFiles('s3://Bad_Bucket/x', o)).rejects.toMatchObject({ code: 'S3_URL_INVALID' });
  });
});
