import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { RunState } from '../../../src/pipeline/run-state.ts';
import { testConfig } from '../../helpers/config.ts';
import { REDIS_URL, deletePrefix, uniquePrefix } from '../../helpers/redis-cleanup.ts';

const prefixes: string[] = [];

afterAll(async () => {
  for (const p of prefixes) await deletePrefix(p);
});

describe('RunState done and failed shards', () => {
  it('keeps K:done and K:failed disjoint, and counts attempts', async () => {
    const prefix = uniquePrefix('runstate');
    prefixes.push(prefix);
    const redis = new Redis(REDIS_URL);
    try {
      const run = new RunState(redis, prefix, 'r1');
      const loaded = testConfig({ 'redis.prefix': prefix }, { REDIS_URL });
      const meta = { input: 'in', out: 'out', stages: ['download', 'write'], totalRows: 80, totalShards: 2, skippedShards: 0, startedAt: Date.now() };
      expect(await run.attempt()).toBe(0);
      expect(await run.begin(loaded.config, meta)).toBe(1);
      const counts = { rows: 40, kept: 30, filtered: 0, failed: 10 };
      const a = { shardId: 'a', number: 0 };
      const b = { shardId: 'b', number: 7 };
      // A shard failed by a leftover job and then written by its own chain is written, not failed.
      expect(await run.markFailed(a, 'STAGING_STATE_MISSING: gone')).toBe(true);
      expect(await run.markDone(a, counts)).toBe(true);
      expect(await run.failedShards()).toEqual({});
      // A written shard cannot be failed afterwards.
      expect(await run.markDone(b, counts)).toBe(true);
      expect(await run.markFailed(b, 'STAGING_STATE_MISSING: gone')).toBe(false);
      expect(await run.failedShards()).toEqual({});
      expect(await run.isDone(b)).toBe(true);
      expect(await run.isDone({ number: 6 })).toBe(false);
      // A retried write is recorded once.
      expect(await run.markDone(b, counts)).toBe(false);
      expect(await run.doneShards()).toBe(2);
      // One bit a shard: the record of 2 written shards, the 8th the highest, is one byte.
      expect(await redis.strlen(`${run.key}:done`)).toBe(1);
      // A failed write whose job did not carry its number is still recorded.
      expect(await run.markFailed({ shardId: 'c', number: null }, 'INTERNAL: old job')).toBe(true);
      expect(await run.failedShards()).toEqual({ c: 'INTERNAL: old job' });
      expect(await run.totals()).toEqual({ ...counts, rows: 80, kept: 60, failed: 20, shards: 2 });
      expect(await run.begin(loaded.config, meta)).toBe(2);
      expect(await run.isDone(b)).toBe(false);
      expect(await run.attempt()).toBe(2);
    } finally {
      redis.disconnect();
    }
  });
});
