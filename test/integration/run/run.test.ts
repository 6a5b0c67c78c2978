import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readShardParquet } from '../../../src/io/writers/shard-parquet.ts';
import { RunState } from '../../../src/pipeline/run-state.ts';
import { runPipeline } from '../../../src/run/run.ts';
import { runIdFor } from '../../../src/pipeline/shards.ts';
import { logger } from '../../../src/core/logger.ts';
import { fixtureConfig, startFixture, type PipelineFixture } from '../../helpers/pipeline-fixture.ts';
import { REDIS_URL, deletePrefix, uniquePrefix } from '../../helpers/redis-cleanup.ts';

const log = logger().child({ test: 'pipeline' });
let fx: PipelineFixture;
const prefixes: string[] = [];

beforeAll(async () => {
  fx = await startFixture(230);
});
afterAll(async () => {
  await fx.close();
  for (const p of prefixes) await deletePrefix(p);
});

function config(out: string, extra: Record<string, unknown> = {}) {
  const prefix = uniquePrefix('pipe');
  prefixes.push(prefix);
  return fixtureConfig(fx, out, { 'redis.prefix': prefix, 'pipeline.maxInFlightShards': 2, ...extra }, { REDIS_URL });
}

async function readOutput(out: string) {
  const parquets = readdirSync(out).filter((f) => f.endsWith('.parquet')).sort();
  const shards = await Promise.all(parquets.map((p) => readShardParquet(join(out, p))));
  return { parquets, shards, rows: shards.flat() };
}

describe('capfilt run (download, write) on a real HTTP server and Redis', () => {

  it('accounts for every row exactly, per shard and per run, and a rerun is a no-op', async () => {
    const o = join(fx.dir, 'out-fs');
    const loaded = config(o);
    const redis = new Redis(REDIS_URL);
    const state = new RunState(redis, loaded.config.redis.prefix, runIdFor(o));
    let maxInFlight = 0;
    const sampler = setInterval(() => void state.inFlight().then((n) => (maxInFlight = Math.max(maxInFlight, n))), 10);
    const s = await runPipeline({ loaded, workers: true, progress: 'none', log });
    clearInterval(sampler);
    redis.disconnect();

    expect(s).toMatchObject({ status: 'done', reconciled: true, totalRows: 230, totalShards: 6, rows: 230, shardsWritten: 6 });
    expect(s.failed).toBe(fx.failing.size);
    expect(s.kept).toBe(230 - fx.failing.size);
    expect(maxInFlight).toBeLessThanOrEqual(2);
    expect(maxInFlight).toBeGreaterThan(0);

    const { parquets, shards, rows } = await readOutput(o);
    expect(parquets).toEqual(['00000.parquet', '00001.parquet', '00002.parquet', '00003.parquet', '00004.parquet', '00005.parquet']);
    expect(shards.map((r) => r.length)).toEqual([40, 40, 40, 40, 40, 30]);
    expect(new Set(rows.map((r) => r.key)).size).toBe(230);
    expect(rows.map((r) => r.rowIndex).sort((a, b) => a - b)).toEqual(Array.from({ length: 230 }, (_, i) => i));
    for (const r of rows) {
      if (fx.failing.has(r.rowIndex)) {
        expect(r.status).toBe('failed');
        expect(r.reason).toMatch(/^(DOWNLOAD_HTTP_STATUS|IMAGE_NOT_AN_IMAGE)$/);
      } else {
        expect([r.status, r.reason, r.selected]).toEqual(['kept', 'KEPT_UNFILTERED', `a picture number ${r.rowIndex}, with a comma`]);
        expect(r.extra).toEqual({});
      }
    }
    expect(readdirSync(o).filter((f) => f.startsWith('.'))).toEqual([]);

    const mtimes = parquets.map((p) => statSync(join(o, p)).mtimeMs);
    const again = await runPipeline({ loaded, workers: true, progress: 'none', log });
    expect(again).toMatchObject({ status: 'done', reconciled: true, rows: 230, kept: s.kept, failed: s.failed, shardsWritten: 0, shardsSkipped: 6 });
    expect(parquets.map((p) => statSync(join(o, p)).mtimeMs)).toEqual(mtimes);
  });

  it('runs with the Redis staging backend and leaves no staging keys behind', async () => {
    const o = join(fx.dir, 'out-redis');
    const loaded = config(o, { 'staging.backend': 'redis', 'input.saveAdditionalColumns': 'extra_id' });
    const s = await runPipeline({ loaded, workers: true, progress: 'none', log });
    expect(s).toMatchObject({ status: 'done', reconciled: true, rows: 230, failed: fx.failing.size });
    const { rows } = await readOutput(o);
    expect(rows.find((r) => r.rowIndex === 5)?.extra).toEqual({ extra_id: 'id5' });
    const redis = new Redis(REDIS_URL);
    expect(await redis.keys(`${loaded.config.redis.prefix}:stage:*`)).toEqual([]);
    redis.disconnect();
  });


  it('an interrupted run drains, reports what was written, and the same command resumes it exactly', async () => {
    const o = join(fx.dir, 'out-interrupt');
    const loaded = config(o, { 'download.concurrency': 2 });
    const redis = new Redis(REDIS_URL);
    const state = new RunState(redis, loaded.config.redis.prefix, runIdFor(o));
    const ctrl = new AbortController();
    const watcher = setInterval(() => void state.totals().then((t) => t.shards >= 1 && ctrl.abort()), 20);
    const first = await runPipeline({ loaded, workers: true, progress: 'none', log, signal: ctrl.signal });
    clearInterval(watcher);
    redis.disconnect();
    expect(first.status).toBe('interrupted');
    expect(first.rows).toBeGreaterThan(0);
    expect(first.rows).toBeLessThan(230);
    const second = await runPipeline({ loaded, workers: true, progress: 'none', log });
    expect(second).toMatchObject({ status: 'done', reconciled: true, rows: 230, failed: fx.failing.size });
    expect(second.shardsSkipped).toBeGreaterThanOrEqual(first.rows / 40);
    const { rows } = await readOutput(o);
    expect(rows).toHaveLength(230);
    expect(new Set(rows.map((r) => r.key)).size).toBe(230);
  });
});

