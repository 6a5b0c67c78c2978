import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { planShards, type InputRow } from '../../src/io/readers/index.ts';
import { OPTIONS, checkContract, file, readAll } from '../helpers/reader-contract.ts';

/**
 * Bad input at the readers' door, property-based: whatever bytes a file holds (random, truncated,
 * wrong encoding, huge fields), a reader either yields one row per counted record — each valid
 * or failed with a catalogued reason, never dropped — or refuses the whole file with a
 * CapfiltError. Reading by the planned byte ranges gives the same rows as reading the file whole
 * (that is what shards of a resumed run read).
 */
/** Text built from the pieces that break parsers: quotes, separators, line ends, BOMs, invalid UTF-8, long runs. */
const piece = fc.oneof(
  fc.constantFrom('"', '""', ',', '\t', '\n', '\r\n', '\r', '{', '}', '[', ':', '\\', '\uFEFF', 'url', 'caption', 'extra', 'http://a.example/x.jpg', 'https://b/é.png', 'ftp://c', ' ', 'null', '"url"', '"caption"'),
  fc.string({ maxLength: 12 }),
  fc.string({ unit: 'grapheme', maxLength: 6 }),
  fc.integer({ min: 1, max: 400 }).map((k) => 'x'.repeat(k)),
);
const bytesOf = (parts: (string | Uint8Array)[]) => Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : Buffer.from(p))));
const invalidUtf8 = fc.constantFrom(new Uint8Array([0xff]), new Uint8Array([0xc3]), new Uint8Array([0xed, 0xa0, 0x80]), new Uint8Array([0xe2, 0x82]));
const noisyBody = fc.array(fc.oneof({ weight: 8, arbitrary: piece }, { weight: 1, arbitrary: invalidUtf8 }), { maxLength: 60 });

const HEADERS = { csv: 'url,caption,extra\n', tsv: 'url\tcaption\textra\n' } as const;

describe('readers on hostile bytes (property)', () => {
  for (const format of ['csv', 'tsv'] as const) {
    it(`${format}: a valid header then anything: every record counted and accounted, ranges read the same rows`, async () => {
      await fc.assert(
        fc.asyncProperty(noisyBody, fc.boolean(), fc.integer({ min: 1, max: 5 }), async (parts, gz, shardRows) => {
          const raw = bytesOf([HEADERS[format], ...parts]);
          const path = file(gz ? `${format}.gz` : format, gz ? gzipSync(raw) : raw);
          const rows = await checkContract(path);
          if (rows === null) return;
          const ranges = await planShards(path, shardRows, OPTIONS);
          const pieced: InputRow[] = [];
          for (const range of ranges) {
            const r = await readAll(path, OPTIONS, range);
            if ('error' in r) throw r.error;
            pieced.push(...r.rows);
          }
          expect(pieced).toEqual(rows);
        }),
        { numRuns: 60 },
      );
    });
  }

  it('jsonl and url lists: any line content is a row, valid or failed with a reason', async () => {
    const line = fc.oneof(
      fc.json({ maxDepth: 2 }),
      fc.record({ url: fc.oneof(fc.webUrl(), fc.string(), fc.integer(), fc.constant(null)), caption: fc.oneof(fc.string({ maxLength: 100 }), fc.integer(), fc.array(fc.string())), extra: fc.anything({ maxDepth: 2 }) }).map((o) => JSON.stringify(o)),
      fc.string({ maxLength: 30 }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(fc.oneof({ weight: 6, arbitrary: line }, { weight: 1, arbitrary: invalidUtf8 }), { maxLength: 25 }), fc.constantFrom('jsonl', 'txt', 'jsonl.gz'), async (lines, ext) => {
        const raw = bytesOf(lines.flatMap((l) => [l, '\n']));
        const rows = await checkContract(file(ext, ext.endsWith('.gz') ? gzipSync(raw) : raw));
        expect(rows).not.toBeNull();
      }),
      { numRuns: 80 },
    );
  });

  it('random bytes under every extension never escape as anything but a coded error', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 600 }), fc.constantFrom('csv', 'tsv', 'jsonl', 'txt', 'parquet', 'csv.gz', 'jsonl.gz'), async (bytes, ext) => {
        await checkContract(file(ext, bytes));
      }),
      { numRuns: 120 },
    );
  });

  it('a huge field fails its row (caption size, record size) and reading goes on with the next one', async () => {
    const huge = 'y'.repeat(2_000_000);
    const path = file('csv', `url,caption,extra\nhttp://a/1.jpg,"${huge}",1\nhttp://a/2.jpg,${'z'.repeat(100)},2\nhttp://a/3.jpg,ok,3\n`);
    const rows = await checkContract(path, { ...OPTIONS, maxRecordBytes: 1024 * 1024 });
    expect(rows!.map((r) => r.invalid?.code ?? null)).toEqual(['INPUT_ROW_MALFORMED', 'INPUT_CAPTION_TOO_LONG', null]);
    const jl = file('jsonl', `{"url":"http://a/1.jpg","caption":"${huge}"}\n{"url":"http://a/2.jpg","caption":"ok"}\n`);
    expect((await checkContract(jl))!.map((r) => r.invalid?.code ?? null)).toEqual(['INPUT_CAPTION_TOO_LONG', null]);
  });
});
