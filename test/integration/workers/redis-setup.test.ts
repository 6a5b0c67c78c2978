import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { loadConfig, type LoadedConfig } from '../../../src/config/load.ts';
import { isCapfiltError } from '../../../src/core/errors.ts';
import { logger } from '../../../src/core/logger.ts';
import { redisReachable } from '../../../src/workers/connection.ts';
import { resolveRedis } from '../../../src/workers/redis-setup.ts';

const log = logger().child({ test: 'redis-setup' });
// Nothing listens on port 1; the "default" URL below stands for a machine without Redis.
const DEAD = 'redis://127.0.0.1:1';

function asDefault(url: string, autoStart = true): LoadedConfig {
  const base = loadConfig({ env: {} });
  return { config: { ...base.config, redis: { ...base.config.redis, url, autoStart } }, sourceOf: () => 'default', isExplicit: () => false };
}

describe('resolveRedis', () => {
  it('uses a reachable configured Redis as is', async () => {
    const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
    const e = await resolveRedis(asDefault(url), log);
    expect(e).toMatchObject({ url, private: false });
  });

  it('starts a private redis-server (noeviction, loopback) when the default URL has none, and stops it', async () => {
    const e = await resolveRedis(asDefault(DEAD), log);
    expect(e.private).toBe(true);
    expect(e.url).toMatch(/^redis:\/\/127\.0\.0\.1:\d+$/);
    const r = new Redis(e.url);
    expect(await r.config('GET', 'maxmemory-policy')).toEqual(['maxmemory-policy', 'noeviction']);
    r.disconnect();
    await e.stop();
    expect(await redisReachable(e.url, 500)).toBe(false);
  });

  it('never replaces an explicitly configured Redis that is down', async () => {
    const loaded = loadConfig({ env: { REDIS_URL: DEAD } });
    const err = await resolveRedis(loaded, log).catch((x: unknown) => x);
    expect(isCapfiltError(err, 'REDIS_UNAVAILABLE')).toBe(true);
    expect((err as Error).message).toContain('redis.url was set explicitly (env REDIS_URL)');
  });

  it('says how to get a Redis when none is on PATH, or autoStart is off', async () => {
    const path = process.env.PATH;
    process.env.PATH = '/nonexistent';
    try {
      const err = await resolveRedis(asDefault(DEAD), log).catch((x: unknown) => x);
      expect((err as Error).message).toMatch(/no redis-server is on PATH.*apt-get install redis-server/);
    } finally {
      process.env.PATH = path;
    }
    const off = await resolveRedis(asDefault(DEAD, false), log).catch((x: unknown) => x);
    expect((off as Error).message).toContain('redis.autoStart is off');
  });
});
