import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDashboard, type Dashboard } from '../../src/dashboard/server.ts';
import { runDemo, type DemoSummary } from '../../src/run/demo.ts';
import { childLogger } from '../../src/core/logger.ts';
import { StatsReader } from '../../src/telemetry/stats.ts';
import { artifactPath, launchChromium } from '../helpers/browser.ts';
import { testOverrides } from '../helpers/config.ts';

/**
 * The dashboard during `capfilt demo` (its library call): the bundled demo BLIP captions and
 * filters generated noisy pairs, and the demo CLIP scores and labels them, through the whole
 * pipeline while the page is open; the page must follow it and show real score distributions
 * that separate noise from correct texts, and CLIP's figures from the workers' telemetry.
 */
const ROWS = 120;
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const prefix = `test-ddemo-${randomUUID().slice(0, 8)}`;
let dir: string;
let redis: Redis;
let dashboard: Dashboard;
let browser: Browser;
let page: Page;
let demo: Promise<DemoSummary>;
const pageErrors: string[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'capfilt-ddemo-'));
  redis = new Redis(REDIS_URL);
  dashboard = await startDashboard({ redis, prefix, port: 0, pollMs: 300 });
  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 1440, height: 2200 } });
  page.on('console', (m) => { if (m.type() === 'error') pageErrors.push(m.text()); });
  page.on('pageerror', (e) => pageErrors.push(e.message));
  await page.goto(dashboard.url);
  demo = runDemo({
    rows: ROWS, seed: 4242, out: join(dir, 'out'), size: 160, configFile: null, env: {},
    overrides: testOverrides({ 'redis.url': REDIS_URL, 'redis.prefix': prefix, 'redis.autoStart': false, 'shards.rows': 20, 'clip.saveEmbeddings': true }),
    log: childLogger({ test: 'dashboard-demo' }), progress: 'none',
  });
  demo.catch(() => undefined);
}, 120_000);

afterAll(async () => {
  await demo?.catch(() => undefined);
  await browser?.close();
  await dashboard?.close();
  const found = await redis.keys(`${prefix}:*`);
  if (found.length) await redis.del(...found);
  await redis.quit();
  rmSync(dir, { recursive: true, force: true });
});

const rowsDone = () => page.evaluate(() => Number(document.querySelector('#rows-done')?.textContent?.replace(/,/g, '')));

describe('dashboard during capfilt demo', () => {
  it('follows the run while the demo model captions and filters', async () => {
    await page.waitForFunction(() => document.querySelector('#run-state')?.textContent === 'running', null, { timeout: 60_000 });
    const seen: number[] = [];
    for (let i = 0; i < 1200 && (await page.locator('#run-state').textContent()) === 'running'; i++) {
      const n = await rowsDone();
      if (n !== seen[seen.length - 1]) seen.push(n);
      await page.waitForTimeout(250);
    }
    expect(seen.filter((n) => n > 0 && n < ROWS).length).toBeGreaterThanOrEqual(2);
    expect([...seen].sort((a, b) => a - b)).toEqual(seen);
  }, 400_000);

  it('shows the demo\'s totals, score histograms that separate web texts from captions, and thumbnails', async () => {
    const summary = await demo;
    expect(summary.run.status).toBe('done');
    await page.waitForFunction(() => document.querySelector('#run-state')?.textContent === 'finished', null, { timeout: 10_000 });
    expect(await rowsDone()).toBe(ROWS);
    expect(await page.locator('#n-kept').textContent()).toBe(String(summary.run.kept));

    const snap = (await new StatsReader(redis, prefix).run(summary.run.runId))!;
    const web = snap.counters.texts.web;
    const syn = snap.counters.texts.synthetic;
    expect(web.total).toBeGreaterThan(0);
    expect(syn.total).toBeGreaterThan(0);
    expect(await page.locator('#kpi-web .kpi-value').textContent()).toBe(`${((100 * web.kept) / web.total).toFixed(1)}%`);
    // The demo's web texts are ~60% noise; its captions describe their image: the filter keeps
    // clearly more captions than web texts.
    expect(syn.kept / syn.total).toBeGreaterThan(web.kept / web.total);

    for (const id of ['#chart-itm', '#chart-itc']) {
      const painted = await page.evaluate((sel) => {
        const c = document.querySelector(`${sel} canvas`) as HTMLCanvasElement | null;
        if (!c) return 0;
        const d = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
        return n / (c.width * c.height);
      }, id);
      expect(painted, id).toBeGreaterThan(0.01);
    }
    await page.waitForSelector('#gallery .sample img');
    const decoded = await page.evaluate(async () => {
      const imgs = [...document.querySelectorAll<HTMLImageElement>('#gallery .sample img')];
      await Promise.all(imgs.map((i) => i.decode()));
      return imgs.filter((i) => i.naturalWidth > 0).length;
    });
    expect(decoded).toBeGreaterThan(3);
    await page.screenshot({ path: artifactPath('dashboard-demo.png'), fullPage: true });
  });

  it('shows CLIP: score histogram kept vs filtered, per-rule rates, label distribution, embeddings written; the gallery shows CLIP score and top label', async () => {
    const summary = await demo;
    expect(summary.run.stages).toContain('clip');
    const snap = (await new StatsReader(redis, prefix).run(summary.run.runId))!;
    const c = snap.counters;
    await page.waitForFunction(() => document.querySelector('#run-state')?.textContent === 'finished', null, { timeout: 10_000 });
    expect(await page.locator('#clip-view').isVisible()).toBe(true);
    const painted = await page.evaluate(() => {
      const cv = document.querySelector('#chart-clip canvas') as HTMLCanvasElement | null;
      if (!cv) return 0;
      const d = cv.getContext('2d')!.getImageData(0, 0, cv.width, cv.height).data;
      let n = 0;
      for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
      return n / (cv.width * cv.height);
    });
    expect(painted).toBeGreaterThan(0.01);
    // The demo's noise gives both decisions, and its CLIP rule drops texts.
    expect(snap.clipHistogram!.counts.kept.some((n) => n > 0)).toBe(true);
    expect(snap.clipHistogram!.counts.dropped.some((n) => n > 0)).toBe(true);
    expect(await page.locator('#clip-summary').textContent()).toContain('≥ 0.405');
    // Per-rule rates and labels as the workers counted them, and as run.json summed them from the shards.
    expect(c.rejectedBy).toEqual(summary.run.rejectedBy);
    expect(c.rejectedBy.clip).toBeGreaterThan(0);
    const rules = await page.locator('#rules li').allTextContents();
    for (const [rule, n] of Object.entries(c.rejectedBy)) expect(rules.some((t) => t.startsWith(rule) && t.includes(String(n)))).toBe(true);
    expect(c.labels).toEqual(summary.run.labelCounts);
    const labels = await page.locator('#label-dist li').allTextContents();
    expect(labels.length).toBe(Object.keys(c.labels).length);
    expect(Object.values(c.labels).reduce((a, b) => a + b, 0)).toBe(ROWS - summary.run.failed);
    expect(await page.locator('#labelled-images').textContent()).toBe(String(ROWS - summary.run.failed));
    expect(c.embeddingsWritten).toBe(summary.run.kept);
    expect(summary.run.embeddingsWritten).toBe(summary.run.kept);
    expect(await page.locator('#embeddings-written').textContent()).toBe(String(summary.run.kept));
    await page.waitForSelector('#gallery .sample .top-label');
    expect((await page.locator('#gallery .scores').allTextContents()).every((t) => /CLIP -?\d\.\d\d/.test(t))).toBe(true);
    const topLabels = await page.locator('#gallery .top-label').allTextContents();
    expect(topLabels.length).toBeGreaterThan(3);
    for (const t of topLabels) expect(t).toMatch(/^(circle|square|triangle|star|diamond) \d+%$/);
    await page.locator('#clip-view').scrollIntoViewIfNeeded();
    await page.screenshot({ path: artifactPath('dashboard-demo-clip.png'), fullPage: true });
    expect(pageErrors).toEqual([]);
  });
});
