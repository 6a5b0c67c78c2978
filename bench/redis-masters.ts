import { Cluster, type Redis } from 'ioredis';
import type { RedisClient } from '../src/core/redis.ts';

/**
 * The masters behind a benchmark's Redis client, for the benchmarks that read Redis's own
 * counters (bench:scaling, bench:dup-index): one Redis is its own only master; a Redis Cluster
 * client gives a connection to each master, so that INFO, DBSIZE, SCAN, FLUSHALL and MEMORY
 * USAGE (commands that are about one node, not about a key's slot) go to every master in turn.
 * Masters are ordered by port, so that a master keeps its index for the whole benchmark.
 */

/** Resolves once a cluster client knows its slot map (a single Redis needs no wait). */
export async function ready(redis: RedisClient): Promise<void> {
  if (redis instanceof Cluster && redis.status !== 'ready') await new Promise((r) => redis.once('ready', r));
}

export function masterNodes(redis: RedisClient): Redis[] {
  if (!(redis instanceof Cluster)) return [redis];
  return redis.nodes('master').sort((a, b) => (a.options.port ?? 0) - (b.options.port ?? 0));
}

/** A cluster's replicas (none for a single Redis). */
export function replicaNodes(redis: RedisClient): Redis[] {
  return redis instanceof Cluster ? redis.nodes('slave') : [];
}

export const nodeName = (node: Redis): string => `${node.options.host}:${node.options.port}`;

/** One node's INFO fields, parsed, and the reply's length (the bytes the benchmark itself read). */
export async function infoOf(node: Redis, section: string): Promise<{ fields: Record<string, string>; replyBytes: number }> {
  const text = await node.info(section);
  const fields: Record<string, string> = {};
  for (const line of text.split('\r\n')) {
    const i = line.indexOf(':');
    if (i > 0) fields[line.slice(0, i)] = line.slice(i + 1);
  }
  return { fields, replyBytes: Buffer.byteLength(text) };
}

/** used_memory of each master (one entry for a single Redis). */
export async function usedMemory(redis: RedisClient): Promise<number[]> {
  return Promise.all(masterNodes(redis).map(async (n) => Number(/used_memory:(\d+)/.exec(await n.info('memory'))![1])));
}

export async function flushMasters(redis: RedisClient): Promise<void> {
  await Promise.all(masterNodes(redis).map((n) => n.flushall()));
}

/** Keys each master holds (DBSIZE), in master order. */
export async function keysPerMaster(redis: RedisClient): Promise<number[]> {
  return Promise.all(masterNodes(redis).map((n) => n.dbsize()));
}

/**
 * Index (in masterNodes order) of the master serving `key`'s slot; 0 on a single Redis, where
 * nothing is sent. On a cluster it asks CLUSTER KEYSLOT and CLUSTER SLOTS: call it before a
 * measurement starts, as those commands count on the master that answers them.
 */
export async function masterIndexOf(redis: RedisClient, key: string): Promise<number> {
  if (!(redis instanceof Cluster)) return 0;
  const slot = Number(await redis.cluster('KEYSLOT', key));
  const slots = (await redis.cluster('SLOTS')) as unknown as [number, number, [string, number]][];
  const port = slots.find(([from, to]) => slot >= from && slot <= to)![2][1];
  return masterNodes(redis).findIndex((n) => n.options.port === port);
}
