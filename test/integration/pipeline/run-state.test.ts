import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../../src/config/load.ts';
import { RunState } from '../../../src/pipeline/run-state.ts';
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
      const loaded = loadConfig({ env: { REDIS_URL }, overrides: [{ path: 'redis.prefix', value: prefix, source: 'test' }] });
      const meta = { input: 'in', out: 'out', stages: ['download', 'write'], totalRows: 80, totalShards: 2, skippedShards: 0, startedAt: Date.now() };
      expect(await run.attempt()).toBe(0);
      expect(await run.begin(loaded.config, meta)).toBe(1);
      const counts = { rows: 40, kept: 30, filtered: 0, failed: 10 };
      // A shard failed by a leftover job and then written by its own chain is written, not failed.
      expect(await run.markFailed('a', 'STAGING_STATE_MISSING: gone')).toBe(true);
      expect(await run.markDone('a', counts)).toBe(true);
      expect(await run.failedShards()).toEqual({});
      // A written shard cannot be failed afterwards.
      expect(await run.markDone('b', counts)).toBe(true);
      expect(await run.markFailed('b', 'STAGING_STATE_MISSING: gone')).toBe(false);
      expect(await run.failedShards()).toEqual({});
      expect(await run.isDone('b')).toBe(true);
      expect(await run.totals()).toEqual({ ...counts, rows: 80, kept: 60, failed: 20, shards: 2 });
      expect(await run.begin(loaded.config, meta)).toBe(2);
      expect(await run.isDone('b')).toBe(false);
      expect(await run.attempt()).toBe(2);
    } finally {
      redis.disconnect();
    }
  });
});
