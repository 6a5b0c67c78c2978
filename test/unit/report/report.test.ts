import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RowRecord } from '../../../src/core/records.ts';
import { writeRunJson } from '../../../src/io/writers/run-json.ts';
import { writeShardFiles } from '../../../src/io/writers/shard.ts';
import { collectReport } from '../../../src/report/collect.ts';
import { renderReport } from '../../../src/report/html.ts';
import { REPORT_FILE, writeReport } from '../../../src/report/index.ts';
import { imageOf, record, scored } from '../../helpers/records-fixture.ts';

const out = mkdtempSync(join(tmpdir(), 'capfilt-report-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));

function withClip(r: RowRecord, clip: number[], rejected: string[][] = []): RowRecord {
  r.scores.forEach((t, i) => {
    (t as unknown as Record<string, number>).clip = clip[i];
    if (rejected[i]?.length) t.rejectedBy = rejected[i];
  });
  r.labels = [{ label: r.rowIndex % 3 ? 'circle' : 'square', prob: 0.8 }];
  return r;
}

beforeAll(async () => {
  const jpg = await sharp({ create: { width: 32, height: 32, channels: 3, background: '#c03030' } }).jpeg().toBuffer();
  const shard0: RowRecord[] = [
    withClip(scored(0, 0.9, 0.8, 'kept'), [0.31, 0.33]),
    withClip(scored(1, 0.2, 0.7, 'kept'), [0.12, 0.3], [['itm', 'clip']]),
    withClip(scored(2, 0.1, 0.2, 'filtered'), [0.1, 0.12], [['itm', 'clip'], ['itm']]),
    record(3, { status: 'failed', reason: 'DOWNLOAD_HTTP_STATUS', reasonDetail: 'HTTP 404', url: 'http://img.example/missing-3.jpg' }),
    record(4, { status: 'failed', reason: 'DOWNLOAD_HTTP_STATUS', reasonDetail: 'HTTP 500', url: 'http://img.example/broken-4.jpg' }),
  ];
  const shard1: RowRecord[] = [
    withClip(scored(5, 0.95, 0.9, 'kept'), [0.35, 0.3]),
    record(6, { status: 'failed', reason: 'IMAGE_DECODE_FAILED', url: 'http://img.example/6.jpg' }),
  ];
  const images = { get: async () => new Uint8Array(jpg) };
  await writeShardFiles(shard0, { outDir: out, name: '00000', images, startTime: Date.now(), timings: { download: 120, filter: 30 } });
  await writeShardFiles(shard1, { outDir: out, name: '00001', images, startTime: Date.now(), timings: { download: 80 } });
  await writeRunJson(out, {
    runId: 'abc123', status: 'done', input: 'in.parquet', stages: ['download', 'filter', 'clip', 'write'], seconds: 1.5, rowsPerSec: 4.7, reconciled: true,
    config: { filter: { itmThreshold: 0.5, itcThreshold: null }, clip: { minScore: 0.28 } },
  });
});

describe('report: collected from the output folder alone', () => {
  it('totals, per-rule and per-reason counts, failure examples, labels, timings', async () => {
    const d = await collectReport(out);
    expect(d.shards).toBe(2);
    expect(d.totals).toEqual({ rows: 7, kept: 3, filtered: 1, failed: 3 });
    expect(d.img2dataset).toEqual({ successes: 4, failedToDownload: 2, failedToResize: 1 });
    expect(d.texts).toEqual({ web: { scored: 4, kept: 2 }, synthetic: { scored: 4, kept: 3 } });
    expect(d.rules).toEqual({ itm: 3, clip: 2 });
    expect(d.reasons).toEqual({ filtered: { FILTER_NO_TEXT_KEPT: 1 }, failed: { DOWNLOAD_HTTP_STATUS: 2, IMAGE_DECODE_FAILED: 1 } });
    expect(d.failureExamples.DOWNLOAD_HTTP_STATUS.map((e) => e.url)).toEqual(['http://img.example/missing-3.jpg', 'http://img.example/broken-4.jpg']);
    expect(d.labels).toEqual({ square: 1, circle: 3 });
    expect(d.timings).toEqual({ download: 200, filter: 30 });
    expect(d.run).toMatchObject({ runId: 'abc123', status: 'done', stages: ['download', 'filter', 'clip', 'write'] });
  });

  it('histograms per score and source, with the run\'s thresholds', async () => {
    const d = await collectReport(out);
    expect(Object.keys(d.histograms).sort()).toEqual(['clip', 'itc', 'itm']);
    const sum = (a: number[]) => a.reduce((x, y) => x + y, 0);
    for (const h of Object.values(d.histograms)) expect({ web: sum(h.counts.web), synthetic: sum(h.counts.synthetic) }).toEqual({ web: 4, synthetic: 4 });
    expect(d.histograms.itm.threshold).toBe(0.5);
    expect(d.histograms.clip.threshold).toBe(0.28);
    expect(d.histograms.itc.threshold).toBeNull();
    // 0.9 falls in the fine bucket [0.9, 0.905).
    expect(d.histograms.itm.counts.web[Math.floor(0.9 / d.histograms.itm.width + 1e-9)]).toBe(1);
  });

  it('a gallery of kept and filtered rows with thumbnails from the tars and the deciding rule', async () => {
    const d = await collectReport(out);
    expect(d.gallery.map((g) => g.status).sort()).toEqual(['filtered', 'kept', 'kept', 'kept']);
    for (const g of d.gallery) expect(g.thumbnail).toMatch(/^data:image\/jpeg;base64,/);
    const f = d.gallery.find((g) => g.status === 'filtered')!;
    expect(f.decidedBy).toBe('rejected by itm, clip');
    expect(f.texts[0]).toMatchObject({ source: 'web', kept: false, rejectedBy: ['itm', 'clip'], scores: { itm: 0.1, itc: 0.3, clip: 0.1 } });
    expect((await collectReport(out, { galleryPerStatus: 1 })).gallery.map((g) => g.status)).toEqual(['kept', 'filtered']);
  });

  it('a folder without output is REPORT_FAILED', async () => {
    const empty = mkdtempSync(join(tmpdir(), 'capfilt-report-empty-'));
    await expect(collectReport(empty)).rejects.toMatchObject({ code: 'REPORT_FAILED' });
    await expect(collectReport(join(empty, 'missing'))).rejects.toMatchObject({ code: 'REPORT_FAILED' });
    writeFileSync(join(empty, '00000.parquet'), 'not parquet');
    await expect(collectReport(empty)).rejects.toMatchObject({ code: 'REPORT_FAILED', message: expect.stringContaining('00000.parquet') });
    rmSync(empty, { recursive: true, force: true });
  });
});

describe('report: the HTML', () => {
  it('is one self-contained file: no external URL in any src/href, a CSP that allows no fetch, texts escaped', async () => {
    const { file } = await writeReport(out);
    expect(file).toBe(join(out, REPORT_FILE));
    const html = readFileSync(file, 'utf8');
    expect(html).toContain("default-src 'none'");
    expect([...html.matchAll(/\s(?:src|href)="([^"]*)"/g)].map((m) => m[1]).filter((u) => !u.startsWith('data:'))).toEqual([]);
    expect(html).not.toMatch(/<link|@import|url\(/);
    expect(html).toContain('http://img.example/missing-3.jpg');
    expect(html).toContain('filter.itmThreshold 0.5');
    expect(html).toContain('clip.minScore 0.28');
  });

  it('escapes what came from the data', async () => {
    const d = await collectReport(out);
    d.gallery[0].texts[0].text = '<script>alert(1)</script>';
    d.failureExamples.DOWNLOAD_HTTP_STATUS[0].url = 'http://x/"><img src=x onerror=alert(1)>';
    const html = renderReport(d);
    expect(html).not.toContain('<script>alert(1)');
    expect(html).not.toContain('<img src=x');
    expect(html).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
  });
});
