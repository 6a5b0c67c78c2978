import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDashboard, type Dashboard } from '../../src/dashboard/server.ts';
import { REDIS_URL } from '../helpers/redis-cleanup.ts';
import { startLoad } from '../helpers/load.ts';

/**
 * Clients that never back off (closed loops) against a real dashboard: they are served at the
 * configured rate, however fast they ask, and what would wait too long is refused with a coded 503
 * and a Retry-After instead of piling up.
 */
const prefix = `test-dpace-${randomUUID().slice(0, 8)}`;
let redis: Redis;
const dashboards: Dashboard[] = [];

/**
 * `clients` loops that never back off, for `ms`. Every 503 must be coded DASHBOARD_BUSY and carry
 * Retry-After, and nothing may fail but those 503s (startLoad counts a refused connection as an error).
 */
async function closedLoop(base: string, clients: number, ms: number, paths: string[]): Promise<{ ok: number; statuses: Record<string, number>; retryAfter: string[]; seconds: number }> {
  const retryAfter: string[] = [];
  const busyCodes = new Set<unknown>();
  const load = startLoad(base, paths, clients, 0, (status, headers, body) => {
    if (status !== 503) return;
    busyCodes.add(JSON.parse(body).error);
    retryAfter.push(String(headers['retry-after']));
  });
  await new Promise((r) => setTimeout(r, ms));
  const stats = await load.stop();
  expect(stats.errors).toBe(stats.statuses[503] ?? 0);
  expect([...busyCodes]).toEqual(retryAfter.length ? ['DASHBOARD_BUSY'] : []);
  return { ok: stats.statuses[200] ?? 0, statuses: stats.statuses, retryAfter, seconds: stats.seconds };
}

beforeAll(() => {
  redis = new Redis(REDIS_URL);
});
afterAll(async () => {
  await Promise.all(dashboards.map((d) => d.close()));
  await redis.quit();
});

describe('dashboard pacing', () => {
  it('serves 8 closed-loop clients of one address at its client rate, with no errors', async () => {
    const d = await startDashboard({ redis, prefix, port: 0, pacing: { clientRatePerSec: 40, clientBurst: 10, ratePerSec: 1000, burst: 1000, maxWaitMs: 5000 } });
    dashboards.push(d);
    const r = await closedLoop(d.url, 8, 2000, ['/api/overview', '/metrics', '/', '/api/runs', '/api/workers']);
    expect(r.statuses).toEqual({ 200: r.ok });
    // 10 at once, then 40/s; the loops stop only when their last answer arrives, hence the slack.
    expect(r.ok).toBeGreaterThanOrEqual(60);
    expect(r.ok).toBeLessThanOrEqual(10 + 40 * r.seconds + 2);
  });

  it('refuses with 503 DASHBOARD_BUSY and Retry-After what would wait past maxWaitMs', async () => {
    const d = await startDashboard({ redis, prefix, port: 0, pacing: { clientRatePerSec: 5, clientBurst: 1, ratePerSec: 1000, burst: 1000, maxWaitMs: 500 } });
    dashboards.push(d);
    const r = await closedLoop(d.url, 10, 1500, ['/api/runs']);
    expect(r.statuses[503]).toBeGreaterThan(0);
    expect(r.ok).toBeGreaterThan(0);
    expect(r.ok).toBeLessThanOrEqual(1 + 5 * 2.1);
    expect(new Set(r.retryAfter)).toEqual(new Set(['1']));
  });

  it('pacing: false serves a closed loop as fast as it asks', async () => {
    const d = await startDashboard({ redis, prefix, port: 0, pacing: false });
    dashboards.push(d);
    const r = await closedLoop(d.url, 4, 1000, ['/api/runs']);
    expect(r.ok).toBeGreaterThan(100);
  });
});
