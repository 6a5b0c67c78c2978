import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { parquetWriteFile } from 'hyparquet-writer';
import { afterAll, describe, expect, it } from 'vitest';
import { isCapfiltError } from '../../../../src/core/errors.ts';
import { countRows, listInputFiles, planShards, readRows, type InputRow, type ReaderOptions } from '../../../../src/io/readers/index.ts';

const dir = mkdtempSync(join(tmpdir(), 'capfilt-readers-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, data: string | Buffer) => {
  const p = join(dir, name);
  writeFileSync(p, data);
  return p;
};
async function all(path: string, o: Partial<ReaderOptions> = {}, range?: Parameters<typeof readRows>[2]): Promise<InputRow[]> {
  const out: InputRow[] = [];
  for await (const r of readRows(path, o, range)) out.push(r);
  return out;
}

const CSV = 'url,caption,width\nhttp://a/1.jpg,"a cat, sitting",10\nhttps://a/2.jpg,"two\nlines",20\n\nftp://a/3.jpg,x,30\n,no url,40\nhttp://a/5.jpg,ok,50\n';

describe('readRows', () => {
  it('reads CSV with quoted fields and embedded newlines, validating each row', async () => {
    const rows = await all(file('a.csv', CSV), { saveAdditionalColumns: ['width'] });
    expect(rows.map((r) => [r.rowIndex, r.url, r.text, r.extra.width, r.invalid?.code ?? null])).toEqual([
      [0, 'http://a/1.jpg', 'a cat, sitting', '10', null],
      [1, 'https://a/2.jpg', 'two\nlines', '20', null],
      [2, 'ftp://a/3.jpg', 'x', '30', 'INPUT_URL_INVALID'],
      [3, null, 'no url', '40', 'INPUT_URL_MISSING'],
      [4, 'http://a/5.jpg', 'ok', '50', null],
    ]);
    expect(rows[2].invalid!.detail).toBe('row 2: scheme ftp: is not http(s)');
  });

  it('reads the same rows from .csv.gz and TSV', async () => {
    const gz = await all(file('a.csv.gz', gzipSync(CSV)));
    expect(gz.map((r) => r.url)).toEqual((await all(join(dir, 'a.csv'))).map((r) => r.url));
    const tsv = await all(file('b.tsv', 'link\ttext\nhttp://x/1.png\ta, b\n'), { urlCol: 'link', captionCol: 'text' });
    expect(tsv[0]).toMatchObject({ url: 'http://x/1.png', text: 'a, b', invalid: null });
  });

  it('reads JSONL (plain and gzip) with non-string captions, bad lines and over-long captions as invalid rows', async () => {
    const lines = [
      JSON.stringify({ url: 'http://a/1.jpg', caption: 'fine', id: 7 }),
      JSON.stringify({ url: 'http://a/2.jpg', caption: 42 }),
      '{not json',
      JSON.stringify({ url: 'http://a/3.jpg', caption: 'x'.repeat(300) }),
      '[1,2]',
      JSON.stringify({ url: 'http://a/4.jpg' }),
      JSON.stringify({ url: 12345, caption: 'numeric url' }),
    ].join('\n');
    for (const name of ['c.jsonl', 'c.jsonl.gz']) {
      const rows = await all(file(name, name.endsWith('.gz') ? gzipSync(lines) : lines), { maxCaptionBytes: 200, saveAdditionalColumns: ['id'] });
      expect(rows.map((r) => r.invalid?.code ?? 'ok')).toEqual(['ok', 'INPUT_CAPTION_INVALID', 'INPUT_ROW_MALFORMED', 'INPUT_CAPTION_TOO_LONG', 'INPUT_ROW_MALFORMED', 'ok', 'INPUT_URL_INVALID']);
      expect(rows[0].extra).toEqual({ id: 7 });
      expect(rows[5].text).toBeNull();
    }
  });

  it('marks invalid UTF-8 instead of replacing it', async () => {
    const bytes = Buffer.concat([Buffer.from('url,caption\nhttp://a/1.jpg,caf'), Buffer.from([0xc3, 0x28]), Buffer.from('\nhttp://a/2.jpg,café\n')]);
    const rows = await all(file('bad-utf8.csv', bytes));
    expect(rows.map((r) => r.invalid?.code ?? 'ok')).toEqual(['INPUT_ENCODING_INVALID', 'ok']);
    expect(rows[1].text).toBe('café');
  });

  it('reads url lists', async () => {
    const rows = await all(file('d.txt', 'http://a/1.jpg\n\n  https://a/2.jpg  \r\nnot a url\n'), { captionCol: null });
    expect(rows.map((r) => [r.url, r.text, r.invalid?.code ?? null])).toEqual([
      ['http://a/1.jpg', null, null],
      ['https://a/2.jpg', null, null],
      ['not a url', null, 'INPUT_URL_INVALID'],
    ]);
  });

  it('reads parquet by row group, with ranges, extra columns and a trusted flag', async () => {
    const n = 2500;
    const p = join(dir, 'e.parquet');
    parquetWriteFile({
      filename: p,
      rowGroupSize: 1000,
      columnData: [
        { name: 'URL', data: Array.from({ length: n }, (_, i) => (i === 3 ? null : `http://h/${i}.jpg`)), type: 'STRING' },
        { name: 'TEXT', data: Array.from({ length: n }, (_, i) => `caption ${i}`), type: 'STRING' },
        { name: 'id', data: Array.from({ length: n }, (_, i) => BigInt(i)), type: 'INT64' },
        { name: 'coco', data: Array.from({ length: n }, (_, i) => i % 2 === 0), type: 'BOOLEAN' },
      ],
    });
    const o = { urlCol: 'URL', captionCol: 'TEXT', saveAdditionalColumns: ['id'], trustedCol: 'coco' };
    expect(await countRows(p)).toBe(n);
    const rows = await all(p, o, { rowStart: 990, rowEnd: 1010 });
    expect(rows).toHaveLength(20);
    expect(rows[0]).toMatchObject({ rowIndex: 990, url: 'http://h/990.jpg', text: 'caption 990', extra: { id: 990 }, trusted: true });
    expect(rows[1].trusted).toBe(false);
    const head = await all(p, o, { rowStart: 0, rowEnd: 5 });
    expect(head[3].invalid?.code).toBe('INPUT_URL_MISSING');
    expect((await planShards(p, 1000)).map((r) => [r.rowStart, r.rowEnd])).toEqual([[0, 1000], [1000, 2000], [2000, 2500]]);
  });

  it('reads parquet written with the GZIP codec (hyparquet-compressors)', async () => {
    const p = join(dir, 'gz.parquet');
    const { gzipSync: gz } = await import('node:zlib');
    parquetWriteFile({
      filename: p,
      codec: 'GZIP',
      compressors: { GZIP: (b: Uint8Array) => new Uint8Array(gz(b)) },
      columnData: [{ name: 'url', data: ['http://a/1.jpg'], type: 'STRING' }, { name: 'caption', data: ['c'], type: 'STRING' }],
    });
    expect((await all(p))[0]).toMatchObject({ url: 'http://a/1.jpg', text: 'c' });
  });

  it('fails the file, not a row, when the url column is missing or the format is unknown', async () => {
    await expect(all(file('f.csv', 'link,caption\nhttp://a,b\n'))).rejects.toSatisfy((e) => isCapfiltError(e, 'INPUT_COLUMN_MISSING'));
    await expect(all(file('g.xlsx', 'x'))).rejects.toSatisfy((e) => isCapfiltError(e, 'INPUT_FORMAT_UNSUPPORTED'));
    await expect(all(file('h.parquet', 'not parquet at all'))).rejects.toSatisfy((e) => isCapfiltError(e, 'INPUT_UNREADABLE'));
  });
});

describe('planShards and ranges for text files', () => {
  const csvRows = Array.from({ length: 23 }, (_, i) => `http://h/${i}.jpg,"caption ${i}${i % 5 === 0 ? '\nwith a newline' : ''}"`);
  const csv = `url,caption\n${csvRows.join('\n')}\n`;

  it.each(['s.csv', 's.csv.gz'])('%s: seeks (or skips) to each shard and reads exactly its rows', async (name) => {
    const p = file(name, name.endsWith('.gz') ? gzipSync(csv) : csv);
    expect(await countRows(p)).toBe(23);
    const ranges = await planShards(p, 10);
    expect(ranges.map((r) => [r.rowStart, r.rowEnd])).toEqual([[0, 10], [10, 20], [20, 23]]);
    expect(ranges.every((r) => (name.endsWith('.gz') ? r.byteOffset === null : typeof r.byteOffset === 'number'))).toBe(true);
    const joined: string[] = [];
    for (const r of ranges) for (const row of await all(p, {}, r)) joined.push(`${row.rowIndex}:${row.text}`);
    expect(joined).toEqual((await all(p)).map((r) => `${r.rowIndex}:${r.text}`));
  });

  it('jsonl ranges seek by byte offset', async () => {
    const p = file('s.jsonl', Array.from({ length: 7 }, (_, i) => JSON.stringify({ url: `http://h/${i}`, caption: `é${i}` })).join('\n\n'));
    const ranges = await planShards(p, 3);
    const lineBytes = Buffer.byteLength(JSON.stringify({ url: 'http://h/0', caption: 'é0' })) + 2;
    expect(ranges.map((r) => r.byteOffset)).toEqual([0, 3 * lineBytes, 6 * lineBytes]);
    expect((await all(p, {}, ranges[2])).map((r) => r.text)).toEqual(['é6']);
  });

  it('lists a folder of inputs sorted, skipping other files', async () => {
    const sub = join(dir, 'folder');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(sub);
    for (const n of ['b.csv', 'a.jsonl.gz', 'c.parquet', 'notes.md', '.hidden.csv']) writeFileSync(join(sub, n), '');
    expect((await listInputFiles(sub)).map((p) => p.slice(sub.length + 1))).toEqual(['a.jsonl.gz', 'b.csv', 'c.parquet']);
  });
});
