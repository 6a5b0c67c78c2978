import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { logger } from '../../../src/core/logger.ts';
import { closeS3Clients } from '../../../src/io/storage/s3-client.ts';
import { readShardParquet } from '../../../src/io/writers/shard-parquet.ts';
import { runPipeline } from '../../../src/run/run.ts';
import { fixtureConfig, startFixture, type PipelineFixture } from '../../helpers/pipeline-fixture.ts';
import { REDIS_URL, deletePrefix, uniquePrefix } from '../../helpers/redis-cleanup.ts';
import { startS3Server, type TestS3 } from '../../helpers/s3-server.ts';

/**
 * `capfilt run --input s3://…` on a real S3-compatible server (s3rver) with a local output folder:
 * the fixture's 30 rows split into a gzip CSV object and a parquet object below one prefix, run
 * through download and write; and what preflight says about inputs that cannot be run.
 */
const log = logger().child({ test: 'run-s3-input' });
const ROWS = 30;
const SPLIT = 18;
const BUCKET = 'capfilt-run-input';
const prefixes: string[] = [];
let fx: PipelineFixture;
let s3: TestS3;

async function put(key: string, body: Uint8Array | string): Promise<void> {
  await s3.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: typeof body === 'string' ? Buffer.from(body) : body }));
}

beforeAll(async () => {
  [fx, s3] = await Promise.all([startFixture(ROWS), startS3Server()]);
  await s3.createBucket(BUCKET);
  const [header, ...lines] = readFileSync(fx.input, 'utf8').trimEnd().split('\n');
  await put('in/part-0.csv.gz', gzipSync(`${[header, ...lines.slice(0, SPLIT)].join('\n')}\n`));
  // The rest as parquet, the columns the CSV has (url, caption, extra_id).
  const rest = lines.slice(SPLIT).map((l) => /^([^,]*),"(.*)",(.*)$/.exec(l)!);
  const parquet = parquetWriteBuffer({
    rowGroupSize: 5,
    columnData: [
      { name: 'url', data: rest.map((m) => m[1]), type: 'STRING' },
      { name: 'caption', data: rest.map((m) => m[2]), type: 'STRING' },
      { name: 'extra_id', data: rest.map((m) => m[3]), type: 'STRING' },
    ],
  });
  await put('in/part-1.parquet', new Uint8Array(parquet));
  await put('zero/a.jsonl', '');
  await put('badcol/a.csv', 'link,caption\nhttp://a.test/1.jpg,one\n');
});
afterAll(async () => {
  closeS3Clients();
  await Promise.all([fx?.close(), s3?.dispose(), ...prefixes.map((p) => deletePrefix(p))]);
});

function config(input: string, out: string, extra: Record<string, unknown> = {}) {
  const prefix = uniquePrefix('run-s3-input');
  prefixes.push(prefix);
  return fixtureConfig(fx, out, { 'input.path': input, 'redis.prefix': prefix, 'shards.rows': 10, 'pipeline.maxInFlightShards': 2, 's3.endpoint': s3.endpoint, ...extra }, { REDIS_URL });
}

/** The fixture row a URL was made for (…/img/7.jpg, …/missing/3, …/html/10). */
const fixtureRow = (url: string) => Number(/\/(\d+)(?:\.jpg)?$/.exec(url)![1]);

describe('capfilt run with its input on S3 and a local output folder', () => {
  it('reads every object below the prefix and accounts for every row', async () => {
    const out = join(fx.dir, 'out');
    const s = await runPipeline({ loaded: config(`s3://${BUCKET}/in/`, out), workers: true, progress: 'none', log });
    // 18 CSV rows in shards of 10 and 8, 12 parquet rows in 10 and 2.
    expect(s).toMatchObject({ status: 'done', reconciled: true, totalRows: ROWS, totalShards: 4, rows: ROWS, shardsWritten: 4, failed: fx.failing.size, kept: ROWS - fx.failing.size });
    const parquets = readdirSync(out).filter((f) => f.endsWith('.parquet')).sort();
    expect(parquets).toEqual(['00000.parquet', '00001.parquet', '00002.parquet', '00003.parquet']);
    const shards = await Promise.all(parquets.map((p) => readShardParquet(join(out, p))));
    expect(shards.map((r) => r.length)).toEqual([10, 8, 10, 2]);
    const rows = shards.flat();
    // Row indexes count per file: the CSV object's 0-17, then the parquet object's 0-11.
    expect(rows.map((r) => r.rowIndex)).toEqual([...Array.from({ length: SPLIT }, (_, i) => i), ...Array.from({ length: ROWS - SPLIT }, (_, i) => i)]);
    expect(rows.map((r) => fixtureRow(r.url!))).toEqual(Array.from({ length: ROWS }, (_, i) => i));
    for (const r of rows) {
      const i = fixtureRow(r.url!);
      expect(r.text).toBe(`a picture number ${i}, with a comma`);
      if (fx.failing.has(i)) expect(r.reason).toMatch(/^(DOWNLOAD_HTTP_STATUS|IMAGE_NOT_AN_IMAGE)$/);
      else expect([r.status, r.reason]).toEqual(['kept', 'KEPT_UNFILTERED']);
    }
    // A second run finds every shard written: nothing is read again but the plan.
    const again = await runPipeline({ loaded: config(`s3://${BUCKET}/in/`, out), workers: true, progress: 'none', log });
    expect(again).toMatchObject({ status: 'done', reconciled: true, totalRows: ROWS, shardsWritten: 0 });
  });

  it.each([
    ['a bucket that does not exist', 's3://capfilt-no-such-bucket/in/', 'S3_NO_SUCH_BUCKET'],
    ['an object that does not exist', `s3://${BUCKET}/in/part-9.parquet`, 'S3_NO_SUCH_KEY'],
    ['a prefix without input objects', `s3://${BUCKET}/nothing/`, 'INPUT_UNREADABLE'],
    ['objects without rows', `s3://${BUCKET}/zero/`, 'INPUT_EMPTY'],
    ['an object without the url column', `s3://${BUCKET}/badcol/a.csv`, 'INPUT_COLUMN_MISSING'],
  ])('preflight stops %s with %s', async (_, input, code) => {
    const out = join(fx.dir, `out-${code}`);
    await expect(runPipeline({ loaded: config(input, out), workers: true, progress: 'none', log })).rejects.toMatchObject({ code });
  });
});
