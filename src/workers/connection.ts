import type { ConnectionOptions } from 'bullmq';
import { Redis, type RedisOptions } from 'ioredis';
import { CapfiltError } from '../errors.ts';

/**
 * Redis connections. BullMQ workers need `maxRetriesPerRequest: null` (blocking commands must
 * wait through reconnects); plain clients keep a bounded retry so that a dead Redis surfaces as
 * an error instead of a hang.
 */
export function redisOptionsFromUrl(url: string): RedisOptions {
  const u = new URL(url);
  const db = u.pathname.length > 1 ? Number(u.pathname.slice(1)) : 0;
  return {
    host: u.hostname.replace(/^\[|\]$/g, ''),
    port: u.port ? Number(u.port) : 6379,
    username: u.username ? decodeURIComponent(u.username) : undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    db: Number.isFinite(db) ? db : 0,
    ...(u.protocol === 'rediss:' ? { tls: {} } : {}),
  };
}

export function workerConnection(url: string): ConnectionOptions {
  const { host, port, username, password, db, tls } = redisOptionsFromUrl(url);
  return { host, port, username, password, db, tls, maxRetriesPerRequest: null };
}

export function openRedis(url: string): Redis {
  return new Redis({ ...redisOptionsFromUrl(url), maxRetriesPerRequest: 3 });
}

/** True when a Redis answers PING at `url` within `timeoutMs`. */
export async function redisReachable(url: string, timeoutMs = 1500): Promise<boolean> {
  const r = new Redis({ ...redisOptionsFromUrl(url), lazyConnect: true, maxRetriesPerRequest: 0, connectTimeout: timeoutMs, retryStrategy: () => null, enableOfflineQueue: false });
  r.on('error', () => undefined);
  try {
    await r.connect();
    return (await r.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    r.disconnect();
  }
}

/** BullMQ silently stalls or loses jobs when Redis evicts keys; say so before starting. */
export async function checkEvictionPolicy(redis: Redis): Promise<string | null> {
  try {
    const [, policy] = (await redis.config('GET', 'maxmemory-policy')) as [string, string];
    return policy === 'noeviction' ? null : `Redis maxmemory-policy is "${policy}"; BullMQ needs "noeviction" (CONFIG SET maxmemory-policy noeviction)`;
  } catch {
    return null;
  }
}

export function redisUnavailable(url: string, hint: string): CapfiltError {
  return new CapfiltError('REDIS_UNAVAILABLE', `no Redis answers at ${url}. ${hint}`, { url });
}
