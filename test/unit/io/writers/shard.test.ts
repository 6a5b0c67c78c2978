import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isCapfiltError } from '../../../../src/core/errors.ts';
import { listShards, shardDone, writeShardFiles } from '../../../../src/io/writers/shard.ts';
import { readShardParquet } from '../../../../src/io/writers/shard-parquet.ts';
import { readTarEntries } from '../../../../src/io/writers/tar.ts';
import { readRunJson, writeRunJson } from '../../../../src/io/writers/run-json.ts';
import type { RowRecord } from '../../../../src/core/records.ts';
import { record, scored } from '../../../helpers/records-fixture.ts';

const dir = mkdtempSync(join(tmpdir(), 'capfilt-writers-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const bytesOf = (ref: string) => new TextEncoder().encode(`image bytes for ${ref}`);
const images = { get: async (ref: string) => bytesOf(ref) };

function shardRecords(): RowRecord[] {
  return [
    scored(0, 0.9, 0.2, 'kept'),
    scored(1, 0.1, 0.7, 'kept'),
    scored(2, 0.2, 0.3, 'filtered'),
    record(3, { status: 'failed', reason: 'DOWNLOAD_HTTP_STATUS', reasonDetail: 'HTTP 404', fetch: { httpStatus: 404, finalUrl: 'http://img.example/3.jpg', bytes: 0, attempts: 1, ms: 5 } }),
    record(4, { status: 'failed', reason: 'IMAGE_DECODE_FAILED', reasonDetail: 'truncated' }),
    record(5, { url: 'ftp://x', status: 'failed', reason: 'INPUT_URL_INVALID', reasonDetail: 'row 5: scheme ftp: is not http(s)' }),
    { ...scored(6, 0.8, 0.9, 'kept'), trusted: true, reason: 'KEPT_TRUSTED', selected: 'web text 6' },
  ].map((r, i) => ({ ...r, extra: { id: i, source: i % 2 ? 'cc3m' : null, status: 'clash', tags: ['a', i] } }));
}

describe('writeShardFiles', () => {
  it('writes tar (kept rows), filtered tar, stats and parquet (every row) that read back exactly', async () => {
    const records = shardRecords();
    const { paths, stats } = await writeShardFiles(records, { outDir: dir, name: '00007', images, startTime: Date.now() - 1500, timings: { download: 1000, write: 5 } });
    expect(readdirSync(dir).sort()).toEqual(['00007.parquet', '00007.tar', '00007_stats.json', 'filtered']);
    expect(readdirSync(join(dir, 'filtered'))).toEqual(['00007.tar']);

    const tarEntries = await readTarEntries(paths.tar);
    expect([...tarEntries.keys()]).toEqual(['000070000.jpg', '000070000.txt', '000070000.json', '000070001.jpg', '000070001.txt', '000070001.json', '000070006.jpg', '000070006.txt', '000070006.json']);
    expect(tarEntries.get('000070001.txt')!.toString()).toBe('a synthetic caption 1');
    expect(tarEntries.get('000070000.jpg')!.toString()).toBe('image bytes for mem:0');
    const meta = JSON.parse(tarEntries.get('000070000.json')!.toString());
    expect(meta).toMatchObject({ key: '000070000', url: 'http://img.example/0.jpg', text: 'web text 0', selected: 'web text 0', captions: ['a synthetic caption 0'] });
    expect(meta.scores).toHaveLength(2);
    expect([...(await readTarEntries(paths.filteredTar)).keys()]).toEqual(['000070002.jpg', '000070002.txt', '000070002.json']);

    const back = await readShardParquet(paths.parquet);
    expect(back).toHaveLength(records.length);
    back.forEach((r, i) => {
      const want = records[i];
      expect(r).toEqual({ ...want, image: want.image ? { ...want.image, ref: `tar:${want.key}` } : null });
    });

    expect(stats).toMatchObject({ count: 7, successes: 4, kept: 3, filtered: 1, failed: 3, failed_to_download: 2, failed_to_resize: 1 });
    expect(stats.status_dict).toEqual({ success: 4, DOWNLOAD_HTTP_STATUS: 1, IMAGE_DECODE_FAILED: 1, INPUT_URL_INVALID: 1 });
    expect(stats.filter).toMatchObject({ web_scored: 4, web_kept: 2, synthetic_scored: 4, synthetic_kept: 2, rows_kept_rate: 0.75 });
    expect(stats.selected_source).toEqual({ web: 1, synthetic: 1, trusted: 1 });
    expect(stats.duration).toBeGreaterThanOrEqual(1.5);
    expect(JSON.parse(readFileSync(paths.stats, 'utf8'))).toEqual(stats);
    expect(await shardDone(dir, '00007')).toBe(true);
    expect(await listShards(dir)).toEqual(['00007']);
  });

  it('refuses pending rows and kept rows without an image, writing nothing', async () => {
    const out = join(dir, 'refuse');
    await expect(writeShardFiles([record(0)], { outDir: out, name: '00000', images, startTime: Date.now() })).rejects.toSatisfy((e) => isCapfiltError(e, 'OUTPUT_WRITE_FAILED'));
    await expect(writeShardFiles([record(0, { status: 'kept' })], { outDir: out, name: '00000', images, startTime: Date.now() })).rejects.toThrow(/has no image/);
  });

  it('leaves no parquet and no temporary file when an image cannot be read', async () => {
    const out = join(dir, 'broken-store');
    const failing = { get: async (ref: string) => { throw new Error(`blob ${ref} is gone`); } };
    await expect(writeShardFiles(shardRecords(), { outDir: out, name: '00001', images: failing, startTime: Date.now() })).rejects.toThrow(/blob mem:0 is gone/);
    expect(readdirSync(out)).toEqual([]);
    expect(await shardDone(out, '00001')).toBe(false);
  });

  it('writes and reads run.json', async () => {
    await writeRunJson(dir, { totals: { rows: 7 } });
    expect(await readRunJson(dir)).toEqual({ totals: { rows: 7 } });
    expect(await readRunJson(join(dir, 'none'))).toBeNull();
  });
});
