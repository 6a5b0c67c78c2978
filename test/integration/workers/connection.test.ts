import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { isCapfiltError } from '../../../src/core/errors.ts';
import { readShardParquet } from '../../../src/io/writers/shard-parquet.ts';
import { runPipeline } from '../../../src/run/run.ts';
import { RedisOutage, openRedis } from '../../../src/workers/connection.ts';
import { startChaosRedis, type ChaosRedis } from '../../helpers/redis-server.ts';
import { fixtureConfig, startFixture, type PipelineFixture } from '../../helpers/pipeline-fixture.ts';

/**
 * Redis restarting under a run: a private redis-server (AOF on, `appendfsync always`) is killed
 * and started again while clients and a whole `runPipeline` use it. The run must wait it out and
 * finish exactly; a Redis that never comes back must end the run with REDIS_LOST, not a hang.
 */
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function capture() {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  return { log, lines, count: (re: RegExp) => lines.filter((l) => re.test(String(l.msg))).length };
}

let fx: PipelineFixture;
const servers: ChaosRedis[] = [];

beforeAll(async () => {
  fx = await startFixture(240, { slowMs: 60 });
});
afterAll(async () => {
  for (const s of servers) await s.dispose();
  await fx?.close();
});
afterEach(() => {
  vi.restoreAllMocks();
});

async function server(): Promise<ChaosRedis> {
  const s = await startChaosRedis({ appendfsync: 'always' });
  servers.push(s);
  return s;
}

describe('RedisOutage and the Redis clients', () => {
  it('rides out a Redis killed and started again, logging the outage once', async () => {
    const redis = await server();
    const { log, count } = capture();
    const unhandled = vi.spyOn(console, 'error');
    const client = openRedis(redis.url, { log, name: 'test client' });
    const outage = new RedisOutage({ url: redis.url, log, maxOutageMs: 60_000, pauseMs: 100 });
    try {
      await client.set('n', '0');
      const seen: number[] = [];
      let stop = false;
      const loop = (async () => {
        while (!stop) {
          seen.push(await outage.run('counting', () => client.incr('n')));
          await sleep(20);
        }
      })();
      await sleep(300);
      await redis.stop('SIGKILL');
      await sleep(1500);
      expect(outage.downMs()).toBeGreaterThan(0);
      await redis.start();
      await sleep(1000);
      stop = true;
      await loop;
      expect(outage.downMs()).toBe(0);
      // Every call answered, in order; the count survived the crash (AOF always).
      expect(seen.length).toBeGreaterThan(10);
      for (let i = 1; i < seen.length; i++) expect(seen[i]).toBeGreaterThan(seen[i - 1]);
      expect(Number(await client.get('n'))).toBeGreaterThanOrEqual(seen.length);
      expect(count(/does not answer; waiting for it/)).toBe(1);
      expect(count(/answers again/)).toBe(1);
      expect(count(/lost the connection to Redis/)).toBe(1);
      expect(count(/connection restored/)).toBe(1);
      expect(unhandled.mock.calls.filter((c) => String(c[0]).includes('[ioredis] Unhandled error event'))).toEqual([]);
    } finally {
      client.disconnect();
    }
  });

  it('gives up with REDIS_LOST once Redis has been away for maxOutageMs', async () => {
    const redis = await server();
    const { log } = capture();
    const client = openRedis(redis.url, { log });
    try {
      await client.ping();
      await redis.stop('SIGKILL');
      const outage = new RedisOutage({ url: redis.url, log, maxOutageMs: 1500, pauseMs: 100 });
      const t0 = Date.now();
      const err = await outage.run('reading', () => client.get('x')).catch((e: unknown) => e);
      expect(isCapfiltError(err, 'REDIS_LOST'), String(err)).toBe(true);
      expect((err as Error).message).toMatch(/has not answered for \d+ s \(redis\.outageTimeoutMs = 1500; last error while reading/);
      // Each try waits for the client's own 3 reconnect attempts (up to 2 s apart) before it fails.
      expect(Date.now() - t0).toBeLessThan(1500 + 8000);
    } finally {
      client.disconnect();
      await redis.start();
    }
  });

  it('a client that waits for reconnects answers a command sent during the outage once Redis is back', async () => {
    const redis = await server();
    const client = openRedis(redis.url, { waitForReconnect: true });
    try {
      await client.set('k', 'before');
      await redis.stop('SIGKILL');
      const pending = client.get('k');
      await sleep(1000);
      await redis.start();
      expect(await pending).toBe('before');
    } finally {
      client.disconnect();
    }
  });
});

describe('runPipeline with Redis restarting mid-run', { timeout: 120_000 }, () => {
  function config(url: string, out: string, extra: Record<string, unknown> = {}) {
    return fixtureConfig(fx, out, {
      'redis.url': url, 'redis.autoStart': false, 'redis.prefix': 'outage',
      'download.concurrency': 4, 'pipeline.maxInFlightShards': 2,
      'pipeline.lockDurationMs': 3000, 'pipeline.stalledIntervalMs': 1000, 'pipeline.backoffMs': 200,
      ...extra,
    }, {});
  }
  const parquets = (out: string) => (existsSync(out) ? readdirSync(out).filter((f) => /^\d+\.parquet$/.test(f)) : []);

  it('waits while Redis is killed and restarted, then finishes with every row exactly once', async () => {
    const redis = await server();
    const out = join(fx.dir, 'out-restart');
    const { log, count } = capture();
    const running = runPipeline({ loaded: config(redis.url, out), workers: true, progress: 'none', log });
    const t0 = Date.now();
    while (parquets(out).length < 1 && Date.now() - t0 < 60_000) await sleep(20);
    const before = parquets(out).length;
    await redis.stop('SIGKILL');
    await sleep(2000);
    await redis.start();
    const s = await running;

    // The outage happened while shards were still to be written, and the run waited for it.
    expect(before).toBeLessThan(6);
    expect(count(/does not answer; waiting for it/)).toBe(1);
    expect(count(/answers again; the run continues/)).toBe(1);
    expect(s).toMatchObject({ status: 'done', reconciled: true, totalRows: 240, rows: 240, failedShards: {} });
    const rows = (await Promise.all(parquets(out).map((p) => readShardParquet(join(out, p))))).flat();
    expect(rows.map((r) => r.rowIndex).sort((a, b) => a - b)).toEqual(Array.from({ length: 240 }, (_, i) => i));
    for (const r of rows) expect(r.status).toBe(fx.failing.has(r.rowIndex) ? 'failed' : 'kept');
  });

  it('ends with REDIS_LOST when Redis does not come back within redis.outageTimeoutMs, without hanging', async () => {
    const redis = await server();
    const out = join(fx.dir, 'out-lost');
    const { log } = capture();
    const loaded = config(redis.url, out, { 'redis.outageTimeoutMs': 2000 });
    const running = runPipeline({ loaded, workers: true, progress: 'none', log }).then(() => null, (e: unknown) => e);
    const t0 = Date.now();
    while (parquets(out).length < 1 && Date.now() - t0 < 60_000) await sleep(20);
    await redis.stop('SIGKILL');
    const stopped = Date.now();
    const err = await running;
    expect(isCapfiltError(err, 'REDIS_LOST'), String(err)).toBe(true);
    // 2 s of waiting (plus up to 6 s for the try under way), then the in-process workers are
    // cancelled and closed within a few seconds.
    expect(Date.now() - stopped).toBeLessThan(20_000);
    await redis.start();
  });
});
