import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readShardParquet } from '../../../src/io/writers/shard-parquet.ts';
import { RunState } from '../../../src/pipeline/run-state.ts';
import { runPipeline } from '../../../src/run/run.ts';
import { fileTag, outputName, runIdFor, shardId } from '../../../src/pipeline/shards.ts';
import { logger } from '../../../src/core/logger.ts';
import { StageQueues } from '../../../src/workers/queues.ts';
import { fixtureConfig, startFixture, type PipelineFixture } from '../../helpers/pipeline-fixture.ts';
import { REDIS_URL, deletePrefix, uniquePrefix } from '../../helpers/redis-cleanup.ts';

/**
 * Jobs left in the queues by an earlier attempt of a run (a coordinator that hung or was killed
 * while Redis restarted) meet shards that moved on without them: one shard written since (its
 * staging deleted), one with neither output nor staging. A rerun must record the first from its
 * parquet, feed the second again and write it, and end `done` with every row once, instead of
 * failing those shards with STAGING_STATE_MISSING.
 */
const log = logger().child({ test: 'leftover-jobs' });
let fx: PipelineFixture;
const prefixes: string[] = [];

beforeAll(async () => {
  fx = await startFixture(200);
});
afterAll(async () => {
  await fx.close();
  for (const p of prefixes) await deletePrefix(p);
});

function config(out: string) {
  const prefix = uniquePrefix('leftover');
  prefixes.push(prefix);
  return fixtureConfig(fx, out, {
    'redis.prefix': prefix,
    // One shard at a time: the feeder reaches the last shard only after the others are written,
    // so a leftover job for it runs long before the feeder's own "output exists" skip.
    'pipeline.maxInFlightShards': 1, 'pipeline.backoffMs': 200,
  }, { REDIS_URL });
}

describe('jobs left over from an earlier attempt of the run', { timeout: 120_000 }, () => {
  it('a rerun records written shards from their parquet, writes a shard that has neither output nor staging, and ends done', async () => {
    const out = join(fx.dir, 'out-leftover');
    const loaded = config(out);
    const first = await runPipeline({ loaded, workers: true, progress: 'none', log });
    expect(first).toMatchObject({ status: 'done', totalShards: 5 });

    const runId = runIdFor(out);
    const tag = fileTag(fx.input, fx.input);
    const lost = shardId(tag, 0);
    const written = shardId(tag, 4);
    const olderJob = shardId(tag, 3);
    // Shard 0 lost everything (no output, no staging); its write job is still queued.
    for (const f of ['00000.parquet', '00000.tar', '00000_stats.json']) rmSync(join(out, f), { force: true });
    const queues = new StageQueues(REDIS_URL, loaded.config.redis.prefix);
    const redis = new Redis(REDIS_URL);
    try {
      const attempt = await new RunState(redis, loaded.config.redis.prefix, runId).attempt();
      expect(attempt).toBe(1);
      await queues.enqueue('write', { runId, shardId: lost, output: { name: outputName(0), rows: 40 }, attempt }, loaded.config);
      // Shard 4 is written and its staging deleted, but its write job is still queued.
      await queues.enqueue('write', { runId, shardId: written, output: { name: outputName(4), rows: 40 }, attempt }, loaded.config);
      // A job as older versions queued it: ids only.
      await queues.enqueue('write', { runId, shardId: olderJob }, loaded.config);

      const again = await runPipeline({ loaded, workers: true, progress: 'none', log });

      expect(again.failedShards).toEqual({});
      expect(again).toMatchObject({ status: 'done', reconciled: true, rows: 200, shardsWritten: 1, shardsSkipped: 4 });
      const parquets = readdirSync(out).filter((f) => /^\d+\.parquet$/.test(f)).sort();
      expect(parquets).toEqual(['00000.parquet', '00001.parquet', '00002.parquet', '00003.parquet', '00004.parquet']);
      const rows = (await Promise.all(parquets.map((p) => readShardParquet(join(out, p))))).flat();
      expect(rows.map((r) => r.rowIndex).sort((a, b) => a - b)).toEqual(Array.from({ length: 200 }, (_, i) => i));
      for (const r of rows) expect(r.status).toBe(fx.failing.has(r.rowIndex) ? 'failed' : 'kept');
      const q = new Queue('write', { connection: { url: REDIS_URL }, prefix: loaded.config.redis.prefix });
      expect(await q.getFailedCount()).toBe(0);
      await q.close();
    } finally {
      await queues.close();
      redis.disconnect();
    }
  });
});
