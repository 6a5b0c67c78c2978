import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDashboard, type Dashboard } from '../../src/dashboard/server.ts';
import { generateDemoPair, renderScene } from '../../src/demo/index.ts';
import { runPipeline } from '../../src/run/run.ts';
import type { RunSummary } from '../../src/run/summary.ts';
import { childLogger } from '../../src/core/logger.ts';
import { artifactPath, launchChromium } from '../helpers/browser.ts';
import { testConfig } from '../helpers/config.ts';

/**
 * The dashboard during a real `capfilt run` (the library call behind the command): demo images
 * served from 127.0.0.1 with a delay per image so that the run lasts a few seconds, real
 * download and write stages with in-process workers, stats written by the workers themselves.
 */
const ROWS = 160;
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const prefix = `test-drun-${randomUUID().slice(0, 8)}`;
let dir: string;
let images: Server;
let redis: Redis;
let dashboard: Dashboard;
let browser: Browser;
let page: Page;
let run: Promise<RunSummary>;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'capfilt-drun-'));
  const pairs = Array.from({ length: ROWS }, (_, i) => generateDemoPair(21, i));
  const bytes = new Map<string, Buffer>();
  for (const p of pairs) bytes.set(p.key, Buffer.from(await renderScene(p.scene, { size: 160, format: 'jpeg' })));
  images = createServer((req, res) => {
    const body = bytes.get((req.url ?? '').replace(/^\/img\/|\.jpg$/g, ''));
    setTimeout(() => (body ? res.writeHead(200, { 'content-type': 'image/jpeg' }).end(body) : res.writeHead(404).end()), 200);
  });
  await new Promise<void>((r) => images.listen(0, '127.0.0.1', () => r()));
  const port = (images.address() as { port: number }).port;
  // Every tenth URL is missing: those rows must show up as failed with their reason.
  const rows = pairs.map((p, i) => ({ url: `http://127.0.0.1:${port}/img/${i % 10 === 9 ? 'missing' : p.key}.jpg`, caption: p.webText, noise: p.label }));
  writeFileSync(join(dir, 'pairs.jsonl'), `${rows.map((r) => JSON.stringify(r)).join('\n')}\n`);

  redis = new Redis(REDIS_URL);
  dashboard = await startDashboard({ redis, prefix, port: 0, pollMs: 300 });
  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 1440, height: 1600 } });
  await page.goto(dashboard.url);
  const loaded = testConfig({
    'input.path': join(dir, 'pairs.jsonl'), 'output.dir': join(dir, 'out'),
    'redis.url': REDIS_URL, 'redis.prefix': prefix, 'redis.autoStart': false,
    'pipeline.stages': ['download', 'write'], 'shards.rows': 20,
    'input.saveAdditionalColumns': ['noise'], 'download.ssrfAllowlist': ['127.0.0.1'],
  });
  run = runPipeline({ loaded, workers: true, progress: 'none', log: childLogger({ test: 'dashboard-run' }) });
  run.catch(() => undefined);
});

afterAll(async () => {
  await run?.catch(() => undefined);
  await browser?.close();
  await dashboard?.close();
  await new Promise((r) => images?.close(r));
  const found = await redis.keys(`${prefix}:*`);
  if (found.length) await redis.del(...found);
  await redis.quit();
  rmSync(dir, { recursive: true, force: true });
});

const rowsDone = () => page.evaluate(() => Number(document.querySelector('#rows-done')?.textContent?.replace(/,/g, '')));

describe('dashboard during a real pipeline run', () => {
  it('follows the run live: rows rise while it runs and its in-process worker is listed', async () => {
    await page.waitForFunction(() => document.querySelector('#run-state')?.textContent === 'running', null, { timeout: 30_000 });
    await page.waitForFunction(() => Number(document.querySelector('#rows-done')?.textContent?.replace(/,/g, '')) > 0, null, { timeout: 30_000 });
    await expect.poll(() => page.locator('#workers tbody').textContent(), { timeout: 10_000 }).toContain(hostname());
    expect(await page.locator('#workers tbody tr').first().locator('.status-dot:not(.lost)').count()).toBe(1);
    const seen = [await rowsDone()];
    while (seen[seen.length - 1] < ROWS && seen.length < 200) {
      await page.waitForTimeout(250);
      const n = await rowsDone();
      if (n !== seen[seen.length - 1]) seen.push(n);
      if ((await page.locator('#run-state').textContent()) !== 'running') break;
    }
    // At least two distinct partial values were shown before the end: the page followed the run.
    expect(seen.filter((n) => n > 0 && n < ROWS).length).toBeGreaterThanOrEqual(2);
    expect([...seen].sort((a, b) => a - b)).toEqual(seen);
    expect(await page.locator('#rows-total').textContent()).toBe(String(ROWS));
  });

  it('ends with the run\'s own totals, failures by reason and real thumbnails', async () => {
    const summary = await run;
    expect(summary.status).toBe('done');
    await page.waitForFunction(() => document.querySelector('#run-state')?.textContent === 'finished', null, { timeout: 10_000 });
    expect(await rowsDone()).toBe(ROWS);
    expect(await page.locator('#n-kept').textContent()).toBe(String(summary.kept));
    expect(await page.locator('#n-failed').textContent()).toBe(String(summary.failed));
    expect(summary.failed).toBe(ROWS / 10);
    expect(await page.locator('#reasons').textContent()).toContain('DOWNLOAD_HTTP_STATUS');
    await page.waitForSelector('#gallery .sample img');
    const decoded = await page.evaluate(async () => {
      const imgs = [...document.querySelectorAll<HTMLImageElement>('#gallery .sample img')];
      await Promise.all(imgs.map((i) => i.decode()));
      return imgs.filter((i) => i.naturalWidth > 0).length;
    });
    expect(decoded).toBeGreaterThan(3);
    expect(await page.locator('#gallery .noise').allTextContents()).not.toHaveLength(0);
    // A run without the clip stage shows no CLIP panels and no CLIP score or label in the gallery.
    expect(await page.locator('#clip-view').isHidden()).toBe(true);
    expect(await page.locator('#gallery .top-label').count()).toBe(0);
    expect(await page.locator('#gallery .scores').allTextContents()).not.toContainEqual(expect.stringContaining('CLIP'));
    await page.screenshot({ path: artifactPath('dashboard-real-run.png'), fullPage: true });
  });
});
