import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDashboard, type Dashboard } from '../../../src/dashboard/server.ts';
import { ManualClock } from '../../helpers/manual-clock.ts';
import { REDIS_URL } from '../../helpers/redis-cleanup.ts';

/**
 * The dashboard's pacing hook on a manual clock, through Fastify's inject (no sockets): what a
 * budget holds waits exactly its turn, what would wait past maxWaitMs is refused at once. The
 * closed-loop behaviour over real HTTP is test/security/dashboard-pacing.test.ts.
 */
const prefix = `test-dserver-${randomUUID().slice(0, 8)}`;
let redis: Redis;
const dashboards: Dashboard[] = [];

beforeAll(() => {
  redis = new Redis(REDIS_URL);
});
afterAll(async () => {
  await Promise.all(dashboards.map((d) => d.close()));
  await redis.quit();
});

describe('dashboard request pacing', () => {
  it('holds a request over its client budget until the clock reaches its turn, and refuses one past maxWaitMs', async () => {
    const clock = new ManualClock(1_000_000);
    const d = await startDashboard({ redis, prefix, port: 0, clock, pacing: { clientRatePerSec: 10, clientBurst: 2, ratePerSec: 1000, burst: 1000, maxWaitMs: 250 } });
    dashboards.push(d);
    const get = (ip = '10.0.0.7') => d.app.inject({ method: 'GET', url: '/favicon.ico', remoteAddress: ip });
    // The burst of 2 is served at once.
    expect((await get()).statusCode).toBe(204);
    expect((await get()).statusCode).toBe(204);
    // Then one per 100 ms: the third waits 100 ms, the fourth 200 ms.
    const served: number[] = [];
    const third = get().then((r) => (served.push(3), r));
    await clock.whenSleeping(1);
    const fourth = get().then((r) => (served.push(4), r));
    await clock.whenSleeping(2);
    expect(clock.deadlines).toEqual([1_000_100, 1_000_200]);
    // The fifth would wait 300 ms > maxWaitMs: refused without taking a turn.
    const refused = await get();
    expect(refused.statusCode).toBe(503);
    expect(refused.headers['retry-after']).toBe('1');
    expect(refused.json()).toMatchObject({ error: 'DASHBOARD_BUSY' });
    // Another address has its own budget.
    expect((await get('10.0.0.8')).statusCode).toBe(204);
    await clock.advance(99);
    expect(served).toEqual([]);
    await clock.advance(1);
    expect((await third).statusCode).toBe(204);
    expect(served).toEqual([3]);
    await clock.advance(100);
    expect((await fourth).statusCode).toBe(204);
    expect(served).toEqual([3, 4]);
    expect(clock.pending).toBe(0);
  });
});
