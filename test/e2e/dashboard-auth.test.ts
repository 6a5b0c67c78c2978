import { randomUUID } from 'node:crypto';
import { networkInterfaces } from 'node:os';
import { Redis } from 'ioredis';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isCapfiltError } from '../../src/core/errors.ts';
import { startDashboard, type Dashboard } from '../../src/dashboard/server.ts';
import { StatsWriter } from '../../src/telemetry/stats.ts';
import { artifactPath, launchChromium } from '../helpers/browser.ts';
import { DemoStatsProducer } from '../helpers/dashboard-fixtures.ts';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const prefix = `test-dauth-${randomUUID().slice(0, 8)}`;
const TOKEN = `t-${randomUUID()}`;
let redis: Redis;
let dashboard: Dashboard;
let browser: Browser;
let port: number;

/** A non-loopback address of this machine, when it has one, to prove the bind is not loopback-only. */
function externalAddress(): string | null {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return null;
}

beforeAll(async () => {
  redis = new Redis(REDIS_URL);
  const writer = new StatsWriter({ redis, prefix });
  const producer = new DemoStatsProducer({ writer, runId: 'secured', shards: 2, shardRows: 20 });
  await producer.register();
  await producer.shard(0);
  dashboard = await startDashboard({ redis, prefix, host: '0.0.0.0', port: 0, token: TOKEN, readOnly: true, pollMs: 300 });
  port = Number(new URL(dashboard.url).port);
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
  await dashboard?.close();
  const found = await redis.keys(`${prefix}:*`);
  if (found.length) await redis.del(...found);
  await redis.quit();
});

describe('dashboard security', () => {
  it('refuses a non-loopback bind without a token, before listening', async () => {
    const err = await startDashboard({ redis, prefix, host: '0.0.0.0', port: 0 }).catch((e: unknown) => e);
    expect(isCapfiltError(err, 'DASHBOARD_TOKEN_REQUIRED')).toBe(true);
    expect((err as Error).message).toContain('0.0.0.0');
    expect((err as Error).message).toContain('--token');
  });

  it('requires the token on every route when bound to 0.0.0.0', async () => {
    const hosts = ['127.0.0.1', externalAddress()].filter((h): h is string => h !== null);
    for (const host of hosts) {
      const base = `http://${host}:${port}`;
      for (const path of ['/api/overview', '/metrics', '/api/runs/secured/samples', '/queues/api/queues', '/events']) {
        const res = await fetch(`${base}${path}`);
        expect(res.status, `${host}${path}`).toBe(401);
        await res.body?.cancel();
      }
      const ok = await fetch(`${base}/api/overview`, { headers: { authorization: `Bearer ${TOKEN}` } });
      expect(ok.status).toBe(200);
      expect(((await ok.json()) as { run: { meta: { runId: string } } }).run.meta.runId).toBe('secured');
      const wrong = await fetch(`${base}/api/overview`, { headers: { authorization: `Bearer ${TOKEN}x` } });
      expect(wrong.status).toBe(401);
      const metrics = await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
      expect(metrics.status).toBe(200);
      expect(await metrics.text()).toMatch(/capfilt_run_rows\{run="secured",stage="write",status="kept",role="dashboard"\} \d+/);
    }
  });

  it('sends browsers to a login form that sets an HttpOnly cookie', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`http://127.0.0.1:${port}/`);
    expect(new URL(page.url()).pathname).toBe('/login');
    await page.fill('input[name=token]', 'not-the-token');
    await page.click('button[type=submit]');
    await page.waitForSelector('.error');
    await page.screenshot({ path: artifactPath('dashboard-login.png') });
    await page.fill('input[name=token]', TOKEN);
    await page.click('button[type=submit]');
    await page.waitForFunction(() => Number(document.querySelector('#rows-done')?.textContent) === 20);
    const cookies = await context.cookies();
    expect(cookies).toHaveLength(1);
    expect(cookies[0]).toMatchObject({ name: 'capfilt_session', httpOnly: true, sameSite: 'Strict' });
    expect(cookies[0].value).not.toContain(TOKEN);
    expect(await page.evaluate(() => document.cookie)).toBe('');
    // The live connection authenticates with the same cookie.
    await page.waitForSelector('#live.on');
    await context.close();
  });

  it('read-only mode tells bull-board to hide retry and clean actions', async () => {
    const res = await fetch(`http://127.0.0.1:${port}/queues/api/queues`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { queues: Array<{ name: string; readOnlyMode: boolean; allowRetries: boolean }> };
    expect(body.queues.map((q) => q.name).sort()).toEqual(['caption', 'clip', 'download', 'filter', 'write']);
    for (const q of body.queues) expect(q).toMatchObject({ readOnlyMode: true, allowRetries: false });
  });
});
