import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { logger } from '../../../src/core/logger.ts';
import { S3ObjectStore } from '../../../src/io/storage/object-store.ts';
import { closeS3Clients } from '../../../src/io/storage/s3-client.ts';
import { readShardParquet } from '../../../src/io/writers/shard-parquet.ts';
import { runPipeline } from '../../../src/run/run.ts';
import { fixtureConfig, startFixture, type PipelineFixture } from '../../helpers/pipeline-fixture.ts';
import { REDIS_URL, deletePrefix, uniquePrefix } from '../../helpers/redis-cleanup.ts';
import { startS3Server, type TestS3 } from '../../helpers/s3-server.ts';

const log = logger().child({ test: 'run-s3-staging' });
const ROWS = 30;
const BUCKET = 'capfilt-run-staging';
const prefix = uniquePrefix('run-s3-staging');
let fx: PipelineFixture;
let s3: TestS3;

beforeAll(async () => {
  [fx, s3] = await Promise.all([startFixture(ROWS), startS3Server()]);
  await s3.createBucket(BUCKET);
});
afterAll(async () => {
  closeS3Clients();
  await Promise.all([fx?.close(), s3?.dispose(), deletePrefix(prefix)]);
});

describe('capfilt run with staging.backend s3 and a local output folder', () => {
  it('stages every image in the bucket, accounts for every row, and leaves the staging prefix empty', async () => {
    const out = join(fx.dir, 'out');
    const staging = `s3://${BUCKET}/stage/`;
    const loaded = fixtureConfig(fx, out, {
      'redis.prefix': prefix, 'shards.rows': 10, 'pipeline.maxInFlightShards': 2,
      'staging.backend': 's3', 'staging.dir': staging, 's3.endpoint': s3.endpoint,
    }, { REDIS_URL });
    // Images really go through the bucket: sample the prefix while the run is going.
    const store = new S3ObjectStore(staging, s3.options);
    let peakStaged = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const blobs = (await store.list()).filter((o) => o.name.includes('/blob.')).length;
        peakStaged = Math.max(peakStaged, blobs);
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    const s = await runPipeline({ loaded, workers: true, progress: 'none', log }).finally(() => { sampling = false; });
    await sampler;

    expect(s).toMatchObject({ status: 'done', reconciled: true, totalRows: ROWS, rows: ROWS, shardsWritten: 3, failed: fx.failing.size, kept: ROWS - fx.failing.size });
    expect(peakStaged).toBeGreaterThan(0);
    const parquets = readdirSync(out).filter((f) => f.endsWith('.parquet')).sort();
    expect(parquets).toEqual(['00000.parquet', '00001.parquet', '00002.parquet']);
    const rows = (await Promise.all(parquets.map((p) => readShardParquet(join(out, p))))).flat();
    expect(rows.map((r) => r.rowIndex).sort((a, b) => a - b)).toEqual(Array.from({ length: ROWS }, (_, i) => i));
    for (const r of rows) expect(r.reason).toMatch(fx.failing.has(r.rowIndex) ? /^(DOWNLOAD_HTTP_STATUS|IMAGE_NOT_AN_IMAGE)$/ : /^KEPT_UNFILTERED$/);
    // The tars hold the kept images, read back from the bucket by the write stage.
    expect(readdirSync(out).filter((f) => f.endsWith('.tar')).length).toBeGreaterThan(0);
    expect(readdirSync(out).filter((f) => f.startsWith('.'))).toEqual([]);
    expect(await store.list()).toEqual([]);
  });
});
