import { existsSync, mkdirSync, readdirSync, symlinkSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readShardParquet } from '../../../../src/io/writers/shard-parquet.ts';
import { runPipeline } from '../../../../src/run/run.ts';
import { planShards, rowKey, runIdFor } from '../../../../src/pipeline/shards.ts';
import { logger } from '../../../../src/core/logger.ts';
import { fixtureConfig, startFixture, type PipelineFixture } from '../../../helpers/pipeline-fixture.ts';
import { REDIS_URL, deletePrefix, uniquePrefix } from '../../../helpers/redis-cleanup.ts';

const log = logger().child({ test: 'staging-fs' });
const ROWS = 120;
const SHARD_ROWS = 40;
let fx: PipelineFixture;
const prefix = uniquePrefix('staging-fs');

beforeAll(async () => {
  fx = await startFixture(ROWS);
});
afterAll(async () => {
  await fx.close();
  await deletePrefix(prefix);
});

describe('fs staging on a full disk during a run', () => {
  it('the shard whose images cannot be staged (ENOSPC) is retried, then written with its rows failed for STAGING_UNAVAILABLE; the other shards and the run finish', async () => {
    expect(existsSync('/dev/full'), 'this test writes through /dev/full, which answers every write with ENOSPC').toBe(true);
    const out = join(fx.dir, 'out-enospc');
    const staging = join(fx.dir, 'staging-enospc');
    const loaded = fixtureConfig(fx, out, {
      'redis.prefix': prefix, 'staging.dir': staging, 'shards.rows': SHARD_ROWS, 'pipeline.attempts': 2, 'pipeline.backoffMs': 50,
    }, { REDIS_URL });
    // Every image of the middle shard is written through /dev/full: the disk is "full" for it only.
    const shards = planShards(runIdFor(out), resolve(fx.input), [{ file: resolve(fx.input), rows: ROWS }], SHARD_ROWS);
    const full = shards[1];
    const shardDir = join(staging, full.runId, full.shardId);
    mkdirSync(shardDir, { recursive: true });
    for (let p = 0; p < SHARD_ROWS; p++) symlinkSync('/dev/full', join(shardDir, `blob.${rowKey(full.number, p, SHARD_ROWS)}.jpg`));

    const s = await runPipeline({ loaded, workers: true, progress: 'none', log });
    expect(s).toMatchObject({ status: 'done', reconciled: true, rows: ROWS, shardsWritten: 3 });

    const byShard = await Promise.all(['00000', '00001', '00002'].map((n) => readShardParquet(join(out, `${n}.parquet`))));
    expect(byShard.map((rows) => rows.length)).toEqual([SHARD_ROWS, SHARD_ROWS, SHARD_ROWS]);
    for (const r of byShard[1]) {
      expect([r.status, r.reason]).toEqual(['failed', 'STAGE_FAILED']);
      expect(r.reasonDetail).toMatch(/^download: STAGING_UNAVAILABLE: staging folder .* cannot be used \(staging image .*\): ENOSPC/);
    }
    for (const r of [...byShard[0], ...byShard[2]]) expect(r.reason).toMatch(fx.failing.has(r.rowIndex) ? /^(DOWNLOAD_HTTP_STATUS|IMAGE_NOT_AN_IMAGE)$/ : /^KEPT_UNFILTERED$/);
    // The failed shard's staging (links included) is removed like any written shard's.
    expect(existsSync(shardDir)).toBe(false);
    expect(existsSync(staging) ? readdirSync(staging) : []).toEqual([]);
  });
});
