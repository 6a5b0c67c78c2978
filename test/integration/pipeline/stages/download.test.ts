import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../../../../src/core/errors.ts';
import { MemoryDuplicateIndex } from '../../../../src/io/duplicates.ts';
import { Fetcher } from '../../../../src/io/fetch.ts';
import { downloadRows } from '../../../../src/pipeline/stages/download.ts';
import { FsStagingStore } from '../../../../src/pipeline/staging/fs.ts';
import type { RowRecord } from '../../../../src/core/records.ts';
import { startFixtureServer, type FixtureServer, type StaticRoutes } from '../../../helpers/fixture-server.ts';
import { record } from '../../../helpers/records-fixture.ts';

/**
 * The whole image corpus of ../shared/corpus (970 files from Pillow's test suite: fuzzer crashes,
 * truncated and corrupt files, every format a scraped URL can return) served over HTTP and run
 * through the download stage. Each row must end with an image or a catalogued reason, nothing
 * may crash or hang, and accepted EXIF-oriented images must come out the right way up.
 */
const CORPUS = fileURLToPath(new URL('../../../../../shared/corpus/images/', import.meta.url));
const present = existsSync(CORPUS);
if (!present) process.stderr.write(`corpus.test.ts: skipped, ${CORPUS} is absent (the CI checkout has it beside the repo)\n`);

const TYPES: Record<string, string> = { jpg: 'image/jpeg', jpeg: 'image/jpeg', png: 'image/png', gif: 'image/gif', webp: 'image/webp', tif: 'image/tiff', tiff: 'image/tiff', avif: 'image/avif', bmp: 'image/bmp', svg: 'image/svg+xml', ico: 'image/x-icon' };

describe.skipIf(!present)('full image corpus through the download stage', () => {
  let srv: FixtureServer;
  let fetcher: Fetcher;
  let files: string[];
  let records: RowRecord[];
  const dir = mkdtempSync(join(tmpdir(), 'capfilt-corpus-'));
  const staging = new FsStagingStore(dir);

  beforeAll(async () => {
    files = readdirSync(CORPUS).sort();
    const routes: StaticRoutes = new Map();
    files.forEach((f, i) => {
      const ext = f.split('.').pop()!.toLowerCase();
      // Every 5th file is served with a wrong content type, as careless servers do.
      const type = i % 5 === 0 ? 'image/jpeg' : i % 5 === 1 ? 'application/octet-stream' : TYPES[ext] ?? 'application/octet-stream';
      routes.set(`/${i}`, { body: readFileSync(join(CORPUS, f)), type });
    });
    srv = await startFixtureServer(routes);
    fetcher = new Fetcher({ ssrfAllowlist: ['127.0.0.1/32'], retries: 0, timeoutMs: 10_000 });
  });
  afterAll(async () => {
    await fetcher?.close();
    await srv?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('ends every file with an image or a catalogued reason, within bounded time and memory', async () => {
    records = files.map((_, i) => record(i, { url: `${srv.url}/${i}` }));
    const rss0 = process.memoryUsage().rss;
    const t0 = Date.now();
    await downloadRows(records, {
      fetcher,
      image: { size: 64, resizeMode: 'center_crop', format: 'jpg', quality: 85, limitInputPixels: 50_000_000 },
      duplicates: 'mark',
      duplicateIndex: new MemoryDuplicateIndex(),
      store: { put: (name, bytes) => staging.putBlob('corpus', 'all', name, bytes) },
      concurrency: 8,
    });
    const seconds = (Date.now() - t0) / 1000;
    const reasons: Record<string, number> = {};
    for (const r of records) {
      if (r.image) {
        expect(r.status).toBe('pending');
        expect([r.image.width, r.image.height]).toEqual([64, 64]);
        reasons.ok = (reasons.ok ?? 0) + 1;
      } else {
        expect(r.status, `${files[r.rowIndex]}`).toBe('failed');
        expect(Object.keys(ERROR_CODES), `${files[r.rowIndex]}: ${r.reason}`).toContain(r.reason);
        expect(r.reason!.startsWith('IMAGE_'), `${files[r.rowIndex]}: ${r.reason} ${r.reasonDetail}`).toBe(true);
        reasons[r.reason!] = (reasons[r.reason!] ?? 0) + 1;
      }
    }
    process.stderr.write(`corpus: ${files.length} files in ${seconds.toFixed(1)} s: ${JSON.stringify(reasons)}\n`);
    expect(reasons.ok).toBeGreaterThan(files.length / 2);
    expect(seconds).toBeLessThan(240);
    expect(process.memoryUsage().rss - rss0).toBeLessThan(1024 * 1024 * 1024);
  });

  it('turns every EXIF-oriented hopper the right way up', async () => {
    const pixels = async (name: string) => {
      const r = records[files.indexOf(name)];
      expect(r?.image, name).toBeTruthy();
      return (await sharp(await staging.getBlob(r.image!.ref)).raw().toBuffer()) as Buffer;
    };
    const reference = await pixels('hopper.jpg');
    const oriented = files.filter((f) => /^hopper_orientation_\d\.(jpg|webp)$/.test(f));
    expect(oriented.length).toBeGreaterThanOrEqual(7);
    for (const f of oriented) {
      const p = await pixels(f);
      let diff = 0;
      for (let i = 0; i < p.length; i++) diff += Math.abs(p[i] - reference[i]);
      expect(diff / p.length, f).toBeLessThan(12);
    }
  });
});
