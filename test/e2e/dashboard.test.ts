import { randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import type { Browser, Page } from 'playwright-core';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDashboard, type Dashboard } from '../../src/dashboard/server.ts';
import { StatsReader, StatsWriter, keptAtThreshold } from '../../src/telemetry/stats.ts';
import { artifactPath, launchChromium } from '../helpers/browser.ts';
import { DemoStatsProducer } from '../helpers/dashboard-fixtures.ts';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const prefix = `test-dash-${randomUUID().slice(0, 8)}`;
const runId = 'demo-run-1';
const SHARDS = 120;
const SHARD_ROWS = 25;
const HISTORY = 50;
let redis: Redis;
let dashboard: Dashboard;
let browser: Browser;
let page: Page;
let writer: StatsWriter;
let reader: StatsReader;
let producer: DemoStatsProducer;
let heartbeat: { stop(): Promise<void> };
let writeQueue: Queue;

/**
 * Shards keep arriving in the background while the page is open, one per second as from a
 * worker pool; tests that compare the page with Redis exactly pause it first.
 */
const feed = {
  next: 0,
  paused: false,
  stopped: false,
  loop: Promise.resolve(),
  start(gapMs: number) {
    this.loop = (async () => {
      while (!this.stopped && this.next < SHARDS) {
        if (!this.paused) await producer.shard(this.next++);
        await new Promise((r) => setTimeout(r, gapMs));
      }
    })();
  },
  async rest() {
    this.stopped = true;
    await this.loop;
    while (this.next < SHARDS) await producer.shard(this.next++);
  },
};

async function textOf(sel: string): Promise<string> {
  return (await page.locator(sel).textContent())?.trim() ?? '';
}

const asNumber = (s: string) => Number(s.replace(/[^0-9.]/g, ''));

/** Pauses the feed and waits until the page shows what Redis holds. */
async function settle(): Promise<NonNullable<Awaited<ReturnType<StatsReader['run']>>>> {
  feed.paused = true;
  await new Promise((r) => setTimeout(r, 1200));
  const snap = (await reader.run(runId))!;
  await page.waitForFunction((n) => document.querySelector('#rows-done')?.textContent === n, snap.counters.done.toLocaleString('en-US'), { timeout: 10_000 });
  return snap;
}

beforeAll(async () => {
  redis = new Redis(REDIS_URL);
  writer = new StatsWriter({ redis, prefix, samplesPerShard: 3 });
  reader = new StatsReader(redis, prefix);
  producer = new DemoStatsProducer({ writer, runId, shards: SHARDS, shardRows: SHARD_ROWS });
  // The run started a minute ago: backdated shards give the throughput chart its history.
  const t0 = Date.now() - HISTORY * 1000;
  await producer.register(t0 - 4000);
  for (; feed.next < HISTORY; feed.next++) await producer.shard(feed.next, t0 + feed.next * 1000 + ((feed.next * 379) % 500) - 250);
  heartbeat = writer.startHeartbeat({ id: 'gpu-box-1:4242', host: 'gpu-box-1', pid: 4242, stages: ['download', 'caption', 'filter'], device: 'cuda:0', concurrency: 2 }, 300);
  // A job waiting in a stage no live worker serves must raise the page's warning.
  writeQueue = new Queue('write', { connection: redis, prefix });
  await writeQueue.add('shard', { runId, shardId: 'x' });
  dashboard = await startDashboard({ redis, prefix, host: '127.0.0.1', port: 0, pollMs: 400 });
  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 1440, height: 1800 }, deviceScaleFactor: 1 });
  feed.start(1000);
});

afterAll(async () => {
  feed.stopped = true;
  await feed.loop;
  await browser?.close();
  await heartbeat?.stop();
  await dashboard?.close();
  await writeQueue?.close();
  const found = await redis.keys(`${prefix}:*`);
  if (found.length) await redis.del(...found);
  await redis.quit();
});

describe('dashboard in a real browser', () => {
  it('shows the run live: numbers increase while shards are being recorded', async () => {
    await page.goto(dashboard.url);
    await page.waitForFunction(() => Number(document.querySelector('#rows-done')?.textContent?.replace(/,/g, '')) > 0);
    const first = asNumber(await textOf('#rows-done'));
    expect(first).toBeGreaterThanOrEqual(HISTORY * SHARD_ROWS);
    expect(await textOf('#rows-total')).toBe((SHARDS * SHARD_ROWS).toLocaleString('en-US'));
    await page.waitForFunction((n) => Number(document.querySelector('#rows-done')?.textContent?.replace(/,/g, '')) > n, first, { timeout: 10_000 });
    const later = asNumber(await textOf('#rows-done'));
    expect(later).toBeGreaterThan(first);
    expect(asNumber(await textOf('#rate'))).toBeGreaterThan(0);
    expect(await textOf('#eta')).toMatch(/^\d+(s|m \d+s)$/);

    const snap = await settle();
    const web = snap.counters.texts.web;
    expect(await page.locator('#kpi-web .kpi-value').textContent()).toBe(`${((100 * web.kept) / web.total).toFixed(1)}%`);
    expect(await textOf('#n-kept')).toBe(snap.counters.final.kept.toLocaleString('en-US'));
    expect(await textOf('#n-failed')).toBe(snap.counters.final.failed.toLocaleString('en-US'));
    feed.paused = false;
  });

  it('renders the throughput chart and both score histograms on canvas', async () => {
    for (const id of ['#chart-rate', '#chart-itm', '#chart-itc']) {
      const painted = await page.evaluate((sel) => {
        const c = document.querySelector(`${sel} canvas`) as HTMLCanvasElement | null;
        if (!c || !c.width || !c.height) return 0;
        const d = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
        return n / (c.width * c.height);
      }, id);
      expect(painted, id).toBeGreaterThan(0.01);
    }
    expect(await page.locator('#chart-itm .u-legend').textContent()).toContain('synthetic captions');
    expect(await page.locator('#chart-rate .u-legend').textContent()).toContain('caption');
  });

  it('recomputes kept % from the histogram when the threshold moves', async () => {
    const snap = await settle();
    const spec = snap.histograms.itm.spec;
    const expectAt = (t: number) => {
      const k = keptAtThreshold(spec, snap.histograms.itm.counts.web, t);
      return `${((100 * k.kept) / k.total).toFixed(1)}%`;
    };
    await expect.poll(() => page.locator('#whatif-itm .w.web b').textContent()).toBe(expectAt(0.5));
    await page.locator('#th-itm').fill('0.8');
    await expect.poll(() => page.locator('#whatif-itm .w.web b').textContent()).toBe(expectAt(0.8));
    expect(await textOf('#th-itm-v')).toBe('0.80');
    expect(await page.locator('#whatif-itm .w.web .delta').textContent()).toMatch(/^-\d+\.\d pts$/);
    await page.locator('[data-reset="itm"]').click();
    await expect.poll(() => page.locator('#whatif-itm .w.web b').textContent()).toBe(expectAt(0.5));
    feed.paused = false;
  });

  it('shows a gallery of real thumbnails, filters by decision and noise, and enlarges on click', async () => {
    await page.waitForSelector('#gallery .sample img');
    const images = await page.evaluate(async () => {
      const imgs = [...document.querySelectorAll<HTMLImageElement>('#gallery .sample img')];
      await Promise.all(imgs.map((i) => i.decode()));
      return imgs.map((i) => ({ w: i.naturalWidth, h: i.naturalHeight, jpeg: i.src.startsWith('data:image/jpeg;base64,') }));
    });
    expect(images.length).toBeGreaterThan(4);
    for (const i of images) expect(i.w > 0 && i.h > 0 && i.jpeg).toBe(true);

    await page.locator('#status-chips button[data-status="filtered"]').click();
    await expect.poll(async () => [...new Set(await page.locator('#gallery .badge').allTextContents())]).toEqual(['filtered']);
    await page.locator('#status-chips button[data-status=""]').click();
    await page.locator('#noise-select').selectOption('junk');
    await expect.poll(async () => [...new Set(await page.locator('#gallery .noise').allTextContents())]).toEqual(['junk']);
    await page.locator('#noise-select').selectOption('');
    await expect.poll(async () => (await page.locator('#gallery .noise').allTextContents()).length).toBeGreaterThan(6);

    await page.locator('#gallery .sample img').first().click();
    await expect.poll(() => page.locator('#modal').evaluate((d) => (d as HTMLDialogElement).open)).toBe(true);
    const big = await page.locator('#modal img').evaluate((i) => (i as HTMLImageElement).getBoundingClientRect().width);
    expect(big).toBeGreaterThanOrEqual(380);
    await page.screenshot({ path: artifactPath('dashboard-sample.png') });
    await page.keyboard.press('Escape');
  });

  it('lists workers and warns about a stage with waiting jobs but no live worker', async () => {
    await expect.poll(() => page.locator('#workers tbody tr').first().textContent()).toContain('gpu-box-1');
    expect(await page.locator('#workers tbody').textContent()).toContain('cuda:0');
    await expect.poll(() => page.locator('#warnings').textContent()).toContain('Stage "write" has 1 waiting job but no live worker');
    expect(await page.locator('#warnings').textContent()).not.toContain('"caption"');
  });

  it('keeps updating to the end of the run and saves screenshots', async () => {
    expect(await textOf('#run-state')).toBe('running');
    const running = artifactPath('dashboard-running.png');
    await page.screenshot({ path: running, fullPage: true });
    if (process.env.CAPFILT_DOCS_SCREENSHOT === '1') {
      const docs = new URL('../../docs/img/', import.meta.url);
      mkdirSync(docs, { recursive: true });
      // A palette PNG is a third of the size and reads the same; it is committed to the repo.
      await sharp(running).png({ palette: true, quality: 90, effort: 7 }).toFile(new URL('dashboard.png', docs).pathname);
    }
    await feed.rest();
    await writer.finishRun(runId);
    const total = (SHARDS * SHARD_ROWS).toLocaleString('en-US');
    await page.waitForFunction((t) => document.querySelector('#rows-done')?.textContent === t, total, { timeout: 10_000 });
    expect(await textOf('#pct')).toBe('100.0%');
    expect(await textOf('#run-state')).toBe('finished');
    expect(await textOf('#eta')).toBe('done');
    await page.screenshot({ path: artifactPath('dashboard.png'), fullPage: true });
  });
});
