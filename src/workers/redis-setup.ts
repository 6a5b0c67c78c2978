import type { Logger } from 'pino';
import type { LoadedConfig } from '../config/load.ts';
import { redisReachable, redisUnavailable } from './connection.ts';
import { redisServerOnPath, startPrivateRedis } from './private-redis.ts';

/**
 * Finds the Redis a `run`/`demo` uses. The configured URL when it answers; otherwise, if the URL
 * was not set explicitly (so the user expects capfilt to "just work" on one machine) and
 * redis.autoStart is on, a private redis-server child. Anything else is a clear error: an
 * explicitly configured Redis that is down must not be silently replaced by an empty one.
 */
export interface RedisEndpoint {
  url: string;
  private: boolean;
  stop(): Promise<void>;
}

const HOW_TO_GET_ONE = 'Install one (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis) or point REDIS_URL / --redis-url at a running Redis (docker run -p 6379:6379 redis:7).';

export async function resolveRedis(loaded: LoadedConfig, log: Logger): Promise<RedisEndpoint> {
  const { url, autoStart } = loaded.config.redis;
  if (await redisReachable(url)) return { url, private: false, stop: async () => undefined };
  if (loaded.isExplicit('redis.url')) {
    throw redisUnavailable(url, `redis.url was set explicitly (${loaded.sourceOf('redis.url')}), so no private server is started. Start that Redis or fix the URL.`);
  }
  if (!autoStart) throw redisUnavailable(url, `redis.autoStart is off. ${HOW_TO_GET_ONE}`);
  if (!redisServerOnPath()) throw redisUnavailable(url, `capfilt can start a private one for single-machine runs, but no redis-server is on PATH. ${HOW_TO_GET_ONE}`);
  const p = await startPrivateRedis();
  if (!p) throw redisUnavailable(url, `a private redis-server failed to start. ${HOW_TO_GET_ONE}`);
  log.info({ url: p.url }, 'no Redis at the default URL: started a private redis-server for this run');
  return { url: p.url, private: true, stop: p.stop };
}
