import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { logger } from '../../../src/core/logger.ts';
import { LocalObjectStore, S3ObjectStore } from '../../../src/io/storage/object-store.ts';
import { openOutput } from '../../../src/io/storage/output.ts';
import { closeS3Clients, s3Client } from '../../../src/io/storage/s3-client.ts';
import { readRunJson, writeRunJson } from '../../../src/io/writers/run-json.ts';
import { writeShardFiles } from '../../../src/io/writers/shard.ts';
import { readShardParquet } from '../../../src/io/writers/shard-parquet.ts';
import { readTarEntries } from '../../../src/io/writers/tar.ts';
import { collectReport } from '../../../src/report/collect.ts';
import { rethreshold } from '../../../src/run/rethreshold.ts';
import { retryFailed } from '../../../src/run/retry-failed.ts';
import { runPipeline } from '../../../src/run/run.ts';
import { fixtureConfig, startFixture, type PipelineFixture } from '../../helpers/pipeline-fixture.ts';
import { record, scored } from '../../helpers/records-fixture.ts';
import { REDIS_URL, deletePrefix, uniquePrefix } from '../../helpers/redis-cleanup.ts';
import { startS3Server, type TestS3 } from '../../helpers/s3-server.ts';

/** A run whose output is an s3:// prefix on a real S3-compatible server (s3rver), and what reads and rewrites it. */
const log = logger().child({ test: 'run-s3-output' });
const ROWS = 30;
const BUCKET = 'capfilt-run-out';
const prefix = uniquePrefix('run-s3-output');
const local = mkdtempSync(join(tmpdir(), 'capfilt-s3-out-'));
let fx: PipelineFixture;
let s3: TestS3;

beforeAll(async () => {
  [fx, s3] = await Promise.all([startFixture(ROWS), startS3Server()]);
  await s3.createBucket(BUCKET);
});
afterAll(async () => {
  closeS3Clients();
  await Promise.all([fx?.close(), s3?.dispose(), deletePrefix(prefix)]);
  rmSync(local, { recursive: true, force: true });
});

const names = async (url: string) => (await new S3ObjectStore(url, s3.options).list()).map((o) => o.name);

describe('capfilt run --out s3://bucket/prefix/', () => {
  const out = `s3://${BUCKET}/runs/first/`;
  const config = () => fixtureConfig(fx, out, { 'redis.prefix': prefix, 'shards.rows': 10, 's3.endpoint': s3.endpoint }, { REDIS_URL });

  it('uploads every shard whole with run.json and report.html, every row once; a second run resumes from the parquets', async () => {
    const s = await runPipeline({ loaded: config(), workers: true, progress: 'none', log });
    expect(s).toMatchObject({ status: 'done', reconciled: true, out, rows: ROWS, shardsWritten: 3, failed: fx.failing.size, report: `${out}report.html` });
    expect(await names(out)).toEqual([
      '00000.parquet', '00000.tar', '00000_stats.json',
      '00001.parquet', '00001.tar', '00001_stats.json',
      '00002.parquet', '00002.tar', '00002_stats.json',
      'report.html', 'run.json',
    ]);
    const store = new S3ObjectStore(out, s3.options);
    const rows = (await Promise.all(['00000', '00001', '00002'].map((n) => readShardParquet({ store, name: `${n}.parquet` })))).flat();
    expect(rows.map((r) => r.rowIndex).sort((a, b) => a - b)).toEqual(Array.from({ length: ROWS }, (_, i) => i));
    const tar = await readTarEntries({ store, name: '00000.tar' });
    const kept = (await readShardParquet({ store, name: '00000.parquet' })).filter((r) => r.status === 'kept');
    expect([...tar.keys()].filter((k) => k.endsWith('.txt')).sort()).toEqual(kept.map((r) => `${r.key}.txt`).sort());
    expect(await readRunJson(store)).toMatchObject({ out, rows: ROWS, reconciled: true });
    // Nothing staged or probed is left behind on this host or in the bucket.
    expect(readdirSync(tmpdir()).filter((n) => n.startsWith('capfilt-out-'))).toEqual([]);

    const again = await runPipeline({ loaded: config(), workers: true, progress: 'none', log });
    expect(again).toMatchObject({ status: 'done', shardsWritten: 0, shardsSkipped: 3, rows: ROWS });
  });

  it('builds the report from the bucket alone', async () => {
    const data = await collectReport(openOutput(out, s3.options));
    expect(data.totals).toEqual({ rows: ROWS, kept: ROWS - fx.failing.size, filtered: 0, failed: fx.failing.size });
    expect(data.gallery.length).toBeGreaterThan(0);
    expect(data.gallery.every((g) => g.thumbnail?.startsWith('data:image/jpeg;base64,'))).toBe(true);
  });

  it('retry-failed re-runs the failed rows of an S3 output and rewrites their shards in the bucket', async () => {
    const store = new S3ObjectStore(out, s3.options);
    const before = (await Promise.all(['00000', '00001', '00002'].map((n) => readShardParquet({ store, name: `${n}.parquet` })))).flat();
    // A 404 is transient (retried); an HTML page served as an image is permanent (left as it is).
    const transient = before.filter((r) => r.reason === 'DOWNLOAD_HTTP_STATUS').length;
    expect(transient).toBeGreaterThan(0);
    const s = await retryFailed({ out, s3: s3.options, log });
    // The fixture's failing URLs still fail: the rows are retried, stay failed, and every row is still there once.
    expect(s).toMatchObject({ retried: transient, recovered: 0, stillFailed: { DOWNLOAD_HTTP_STATUS: transient } });
    // The report is rebuilt over the merged shards, in the bucket.
    expect(s.report).toEqual({ file: `${out}report.html` });
    const rows = (await Promise.all(['00000', '00001', '00002'].map((n) => readShardParquet({ store, name: `${n}.parquet` })))).flat();
    expect(rows.length).toBe(ROWS);
    expect(rows.filter((r) => r.status === 'failed').map((r) => r.rowIndex).sort((a, b) => a - b)).toEqual([...fx.failing].sort((a, b) => a - b));
  });
});

describe('an S3 server killed while a run writes', () => {
  it('fails that write, the job is retried once the server is back, and the run ends with every row once', async () => {
    const out = `s3://${BUCKET}/runs/outage/`;
    const loaded = fixtureConfig(fx, out, {
      'redis.prefix': `${prefix}-outage`, 'shards.rows': 10, 'pipeline.backoffMs': 300, 'pipeline.attempts': 6,
      ...Object.fromEntries(Object.entries(s3.options).map(([k, v]) => [`s3.${k}`, v])),
    }, { REDIS_URL });
    // The run's own client (one per option set in a process): kill the server as the first tar upload starts.
    const client = s3Client(loaded.config.s3);
    let outage: Promise<void> | null = null;
    let firstTar = '';
    let sendsOfFirstTar = 0;
    client.middlewareStack.add(
      (next, context) => async (args) => {
        const key = (args.input as { Key?: string }).Key ?? '';
        if (!outage && context.commandName === 'PutObjectCommand' && key.endsWith('.tar')) {
          firstTar = key;
          // Longer than the SDK's own retries of one request, so the write job itself must be retried.
          outage = s3.stop('SIGKILL').then(() => new Promise((r) => setTimeout(r, 2500))).then(() => s3.start());
        }
        // This step runs once per send(), below it the SDK's retries: sends here are write attempts.
        if (key === firstTar && context.commandName === 'PutObjectCommand') sendsOfFirstTar++;
        return next(args);
      },
      { step: 'initialize', name: 'kill-on-first-tar' },
    );
    try {
      const s = await runPipeline({ loaded, workers: true, progress: 'none', log });
      expect(outage).not.toBeNull();
      await outage;
      expect(s).toMatchObject({ status: 'done', reconciled: true, rows: ROWS, shardsWritten: 3, failed: fx.failing.size });
      expect(sendsOfFirstTar).toBeGreaterThanOrEqual(2);
    } finally {
      client.middlewareStack.remove('kill-on-first-tar');
      await deletePrefix(`${prefix}-outage`);
    }
    const store = new S3ObjectStore(out, s3.options);
    const rows = (await Promise.all(['00000', '00001', '00002'].map((n) => readShardParquet({ store, name: `${n}.parquet` })))).flat();
    expect(rows.map((r) => r.rowIndex).sort((a, b) => a - b)).toEqual(Array.from({ length: ROWS }, (_, i) => i));
  });
});

describe('rethreshold on S3', () => {
  it('gives the same shards from a bucket to a bucket as from a folder to a folder', async () => {
    const images = { get: async (ref: string) => new TextEncoder().encode(`bytes of ${ref}`) };
    const shard = () => {
      const rows = [scored(0, 0.9, 0.2, 'kept'), scored(1, 0.55, 0.65, 'kept'), scored(2, 0.3, 0.45, 'filtered'), record(3, { status: 'failed', reason: 'DOWNLOAD_TIMEOUT' })];
      rows[1].reason = 'KEPT_WEB_AND_SYNTHETIC';
      rows[1].selected = 'web text 1';
      return rows;
    };
    const runJson = { runId: 'r1', config: { filter: { itmThreshold: 0.5 } } };
    const from = { local: join(local, 'from'), s3: `s3://${BUCKET}/rethreshold/from/` };
    for (const where of [from.local, from.s3]) {
      const o = openOutput(where, s3.options);
      for (const name of ['00000', '00001']) await o.withShard(name, (dir) => writeShardFiles(shard(), { outDir: dir, name, images, startTime: 0 }));
      await writeRunJson(o.store, runJson);
    }
    const decisions = { itmThreshold: 0.6, itcThreshold: null, selection: 'original-first' as const, keepTop: null };
    const a = await rethreshold(from.local, join(local, 'to'), decisions, s3.options);
    const b = await rethreshold(from.s3, `s3://${BUCKET}/rethreshold/to/`, decisions, s3.options);
    expect({ ...b, from: '', to: '', report: null }).toEqual({ ...a, from: '', to: '', report: null });
    expect(b.report).toEqual({ file: `s3://${BUCKET}/rethreshold/to/report.html` });
    expect(a.changed).toBeGreaterThan(0);
    const toS3 = new S3ObjectStore(`s3://${BUCKET}/rethreshold/to/`, s3.options);
    const toLocal = new LocalObjectStore(join(local, 'to'));
    expect((await toS3.list()).map((o) => o.name)).toEqual((await toLocal.list()).map((o) => o.name));
    for (const name of ['00000', '00001']) {
      const [x, y] = await Promise.all([readShardParquet({ store: toS3, name: `${name}.parquet` }), readShardParquet({ store: toLocal, name: `${name}.parquet` })]);
      expect(x).toEqual(y);
      const [tx, ty] = await Promise.all([readTarEntries({ store: toS3, name: `${name}.tar` }), readTarEntries({ store: toLocal, name: `${name}.tar` })]);
      expect([...tx.keys()]).toEqual([...ty.keys()]);
    }
    // And across: from the bucket into a local folder.
    const c = await rethreshold(from.s3, join(local, 'to-local'), decisions, s3.options);
    expect(c.kept).toBe(a.kept);
  });
});
