import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryDuplicateIndex } from '../../../../src/io/duplicates.ts';
import { Fetcher } from '../../../../src/io/fetch.ts';
import { closeDownloadResources, downloadRows, downloadShard, type DownloadContext } from '../../../../src/pipeline/stages/download.ts';
import { FsStagingStore } from '../../../../src/pipeline/staging/fs.ts';
import type { ShardState } from '../../../../src/core/shard.ts';
import { testConfig } from '../../../helpers/config.ts';
import { startFixtureServer, type FixtureServer, type StaticRoutes } from '../../../helpers/fixture-server.ts';
import { HTML_PAGE, SVG, exifRotatedJpeg, fixture, hugePng } from '../../../helpers/image-fixtures.ts';
import { record } from '../../../helpers/records-fixture.ts';
import { pino } from 'pino';

let srv: FixtureServer;
let fetcher: Fetcher;
const dir = mkdtempSync(join(tmpdir(), 'capfilt-download-'));
const staging = new FsStagingStore(join(dir, 'staging'));

const CASES: Array<[string, Buffer | (() => Promise<Buffer>), string, string]> = [
  ['/hopper.jpg', fixture('hopper.jpg'), 'image/jpeg', 'ok'],
  ['/cmyk.jpg', fixture('pil_sample_cmyk.jpg'), 'image/jpeg', 'ok'],
  ['/16bit.png', fixture('apng__mode_16bit.png'), 'image/png', 'ok'],
  ['/anim.gif', fixture('dispose_bgnd.gif'), 'image/gif', 'ok'],
  ['/rotated.jpg', exifRotatedJpeg, 'image/jpeg', 'ok'],
  ['/png-as-jpeg.jpg', fixture('hopper.png'), 'image/jpeg', 'ok'],
  ['/truncated.jpg', fixture('truncated_jpeg.jpg'), 'image/jpeg', 'IMAGE_DECODE_FAILED'],
  ['/broken.png', fixture('broken.png'), 'image/png', 'IMAGE_DECODE_FAILED'],
  ['/huge.png', async () => hugePng(), 'image/png', 'IMAGE_PIXEL_LIMIT'],
  ['/empty.jpg', Buffer.alloc(0), 'image/jpeg', 'IMAGE_EMPTY'],
  ['/page.jpg', HTML_PAGE, 'image/jpeg', 'IMAGE_NOT_AN_IMAGE'],
  ['/logo.svg', SVG, 'image/svg+xml', 'IMAGE_FORMAT_REFUSED'],
  ['/hopper.bmp', fixture('hopper.bmp'), 'image/bmp', 'IMAGE_FORMAT_UNSUPPORTED'],
  ['/copy-of-hopper.jpg', fixture('hopper.jpg'), 'image/jpeg', 'duplicate'],
];

beforeAll(async () => {
  const routes: StaticRoutes = new Map();
  for (const [path, body, type] of CASES) routes.set(path, { body: typeof body === 'function' ? await body() : body, type });
  srv = await startFixtureServer(routes);
  fetcher = new Fetcher({ ssrfAllowlist: ['127.0.0.1/32'], timeoutMs: 1500, headersTimeoutMs: 1000, bodyTimeoutMs: 500, retries: 0 });
});
afterAll(async () => {
  await fetcher.close();
  await closeDownloadResources();
  await srv.close();
  rmSync(dir, { recursive: true, force: true });
});

function ctx(over: Partial<DownloadContext> = {}): DownloadContext {
  return {
    fetcher,
    image: { size: 64, resizeMode: 'center_crop', format: 'jpg', quality: 90 },
    duplicates: 'mark',
    duplicateIndex: new MemoryDuplicateIndex(),
    store: { put: (name, bytes) => staging.putBlob('run1', 'shard1', name, bytes) },
    concurrency: 4,
    ...over,
  };
}

describe('downloadRows', () => {
  it('ends every fixture case with an image or a coded failure, never throwing', async () => {
    const records = CASES.map(([path], i) => record(i, { url: `${srv.url}${path}` }));
    records.push(record(99, { url: `${srv.url}/status/404` }), record(100, { url: `${srv.url}/robots?v=noai` }), record(101, { url: null }));
    await downloadRows(records, ctx());
    CASES.forEach(([path, , , want], i) => {
      const r = records[i];
      if (want === 'ok' || want === 'duplicate') {
        expect(r.status, `${path}: ${r.reason} ${r.reasonDetail}`).toBe('pending');
        expect(r.image).toMatchObject({ width: 64, height: 64, format: 'jpg' });
        expect(r.image!.sha256).toMatch(/^[0-9a-f]{64}$/);
        expect(r.fetch).toMatchObject({ httpStatus: 200, attempts: 1 });
      } else {
        expect(r.status, path).toBe('failed');
        expect(r.reason, `${path}: ${r.reasonDetail}`).toBe(want);
        expect(r.image).toBeNull();
      }
    });
    expect(records.slice(-3).map((r) => r.reason)).toEqual(['DOWNLOAD_HTTP_STATUS', 'DOWNLOAD_OPTED_OUT', 'INPUT_URL_MISSING']);
    const first = records[0].image!;
    const copy = records[CASES.length - 1].image!;
    expect(copy.sha256).toBe(first.sha256);
    expect(copy.duplicateOf).toBe(records[0].key);
    const rotated = records[4].image!;
    expect([rotated.originalWidth, rotated.originalHeight]).toEqual([32, 64]);
    const staged = await staging.getBlob(first.ref);
    expect((await sharp(staged).metadata()).format).toBe('jpeg');
  });

  it('drops duplicates when asked, and leaves finished rows alone', async () => {
    const idx = new MemoryDuplicateIndex();
    const records = [record(0, { url: `${srv.url}/hopper.jpg` }), record(1, { url: `${srv.url}/copy-of-hopper.jpg` })];
    await downloadRows(records, ctx({ duplicates: 'drop', duplicateIndex: idx, concurrency: 1 }));
    expect(records[1]).toMatchObject({ status: 'failed', reason: 'IMAGE_DUPLICATE' });
    expect(records[1].reasonDetail).toContain(records[0].key);
    const before = srv.hits.get('/hopper.jpg');
    await downloadRows(records, ctx({ duplicates: 'drop', duplicateIndex: idx }));
    expect(srv.hits.get('/hopper.jpg')).toBe(before);
  });

  it('throws on abort instead of failing rows as aborted', async () => {
    const ac = new AbortController();
    const records = [record(0, { url: `${srv.url}/slow-headers?ms=3000` })];
    setTimeout(() => ac.abort(new Error('shutting down')), 100);
    await expect(downloadRows(records, ctx({ signal: ac.signal }))).rejects.toThrow('shutting down');
    expect(records[0].status).toBe('pending');
  });
});

describe('downloadShard (worker-facing)', () => {
  it('uses the run config slices and the staging store', async () => {
    const { config } = testConfig({
      'download.ssrfAllowlist': ['127.0.0.1/32'], 'image.size': 32, 'image.resizeMode': 'keep_ratio_largest', 'image.format': 'webp',
    });
    const state: ShardState = {
      shard: { runId: 'run2', shardId: 'abc-00000', number: 0, outputName: '00000', inputFile: 'x.csv', indexInFile: 0, rowStart: 0, rowCount: 2 },
      records: [record(0, { url: `${srv.url}/16bit.png` }), record(1, { url: 'http://10.0.0.1/x.jpg' })],
      stagesDone: [],
      timings: {},
    };
    await downloadShard(state, { config, staging, log: pino({ level: 'silent' }), signal: new AbortController().signal });
    expect(state.records[0].image).toMatchObject({ width: 32, height: 16, format: 'webp' });
    expect(state.records[1]).toMatchObject({ status: 'failed', reason: 'DOWNLOAD_BLOCKED_ADDRESS' });
    expect(readdirSync(join(dir, 'staging', 'run2', 'abc-00000'))).toEqual(['blob.000070000.webp']);
  });
});
