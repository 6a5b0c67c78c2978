import type { Cluster, Redis } from 'ioredis';

/**
 * A connection to the deployment's Redis: one server or a Redis Cluster
 * (src/workers/connection.ts opens them). Code that takes a RedisClient stays cluster-safe:
 * a multi-key command, MULTI or Lua script only over keys that share a hash tag (`{…}`), and
 * no command that reads the whole keyspace of one node (SCAN, KEYS, FLUSHDB).
 */
export type RedisClient = Redis | Cluster;

/**
 * `{id}`: a hash tag, so that the keys built around it share one cluster slot (Redis hashes
 * only what is between the first `{` and the next `}`).
 */
export function hashTag(id: string): string {
  return `{${id}}`;
}
