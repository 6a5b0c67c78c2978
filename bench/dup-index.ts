/**
 * Redis memory of the run-wide exact-duplicate index (src/io/duplicates.ts), per image.
 *   npm run bench:dup-index -- [--rows 10000000] [--planted 0.01] [--in-flight 4096] [--reference-rows 200000] [--cluster]
 *
 * A private redis-server (free loopback port, no persistence) holds nothing but the index, so
 * `INFO memory` used_memory before and after the claims is the index's own memory. Rows are
 * sha256 of distinct strings claimed under their row keys (src/pipeline/shards.ts rowKey, 10,000
 * rows a shard), the bucket count sized from --rows as a run sizes it from its plan. Then a
 * planted fraction of the rows is claimed again under new keys: each must name the row that
 * claimed it first (recall 1), and no distinct image may be reported as a duplicate (the
 * expected count of false duplicates for the fingerprint width is printed beside the observed).
 * Also reported: MEMORY USAGE of sampled buckets per record, claims/s at --in-flight concurrent
 * claims, and, on --reference-rows rows, the layout this index replaced (one Redis string per
 * full hex sha256 holding the key: `SET prefix:<sha256> <key>`), so the ratio comes from one run.
 * With --cluster the same runs on a local Redis Cluster of 3 masters (no replicas: they hold
 * copies, not more of the index), through the same client code a cluster run uses; memory is the
 * sum over the masters, and each master's share is printed (the buckets carry no hash tag, so
 * they spread). Prints one JSON object.
 */
import { createHash } from 'node:crypto';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { Cluster } from 'ioredis';
import { bucketsFor, expectedFalseDuplicates, fingerprintBits, RECORD_BYTES, RedisDuplicateIndex } from '../src/io/duplicates.ts';
import { rowKey } from '../src/pipeline/shards.ts';
import { openRedis } from '../src/workers/connection.ts';
import { startPrivateRedis } from '../src/workers/private-redis.ts';
import { startRedisCluster } from '../test/helpers/redis-cluster.ts';
import { flushMasters, masterNodes, ready, usedMemory } from './redis-masters.ts';
import { round } from './timing.ts';

const { values } = parseArgs({
  options: {
    rows: { type: 'string', default: '10000000' },
    planted: { type: 'string', default: '0.01' },
    'in-flight': { type: 'string', default: '4096' },
    'reference-rows': { type: 'string', default: '200000' },
    cluster: { type: 'boolean', default: false },
  },
});
const rows = Number(values.rows);
const planted = Math.round(rows * Number(values.planted));
const inFlight = Number(values['in-flight']);
const referenceRows = Number(values['reference-rows']);
const ROWS_PER_SHARD = 10_000;

const sha = (i: number) => createHash('sha256').update(`image-${i}`).digest('hex');
const key = (i: number) => rowKey(Math.floor(i / ROWS_PER_SHARD), i % ROWS_PER_SHARD, ROWS_PER_SHARD);

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

/** Runs `fn(i)` for i in [0, n) with at most `inFlight` pending (ioredis pipelines what is pending). */
async function drive(n: number, fn: (i: number) => Promise<void>, onProgress?: (done: number) => void): Promise<number> {
  const t0 = performance.now();
  let next = 0;
  const lane = async () => {
    while (next < n) {
      const i = next++;
      await fn(i);
      if (onProgress && i % 1_000_000 === 0) onProgress(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(inFlight, n) }, lane));
  return (performance.now() - t0) / 1000;
}

const server = values.cluster ? await startRedisCluster({ masters: 3, replicas: 0 }).then((c) => ({ url: c.url, stop: () => c.dispose() })) : await startPrivateRedis();
if (!server) throw new Error('bench:dup-index needs redis-server on PATH');
const redis = openRedis(server.url, { waitForReconnect: true });
try {
  await ready(redis);
  await flushMasters(redis);
  const base = await usedMemory(redis);
  const index = new RedisDuplicateIndex(redis, 'bench:run:dup', { expectedRows: async () => rows });
  const buckets = await index.bucketCount();
  let falseDuplicates = 0;
  const claimSeconds = await drive(rows, async (i) => {
    if ((await index.claim(sha(i), key(i))) !== null) falseDuplicates++;
  }, (done) => process.stderr.write(`claimed ${done.toLocaleString('en')} / ${rows.toLocaleString('en')}\n`));
  // Redis shrinks idle clients' query buffers (thousands of pipelined claims) within ~2 s.
  await new Promise((r) => setTimeout(r, 3000));
  const perMaster = (await usedMemory(redis)).map((u, i) => u - base[i]!);
  const used = sum(perMaster);

  const sample = Array.from({ length: Math.min(buckets, 200) }, (_, j) => Math.floor((j * buckets) / Math.min(buckets, 200)));
  let sampledBytes = 0;
  let sampledRecords = 0;
  for (const b of sample) {
    const k = `bench:run:dup:${b}`;
    // MEMORY USAGE names its key after a subcommand: ask each master, the one holding it answers.
    for (const n of masterNodes(redis)) sampledBytes += Number((await n.call('MEMORY', 'USAGE', k, 'SAMPLES', '0').catch(() => 0)) ?? 0);
    sampledRecords += (await redis.strlen(k)) / RECORD_BYTES;
  }

  // Planted duplicates: rows spread over the whole run claimed again under keys past its end.
  let found = 0;
  const step = Math.max(1, Math.floor(rows / Math.max(1, planted)));
  const plantSeconds = await drive(planted, async (j) => {
    const i = (j * step) % rows;
    if ((await index.claim(sha(i), key(rows + j))) === key(i)) found++;
  });

  // The layout this index replaced, on fewer rows: one string per hex sha256.
  await flushMasters(redis);
  const refBase = sum(await usedMemory(redis));
  const refSeconds = await drive(referenceRows, async (i) => {
    await redis.set(`bench:run:dup:${sha(i)}`, key(i), 'EX', 7 * 24 * 3600, 'NX');
  });
  await new Promise((r) => setTimeout(r, 3000));
  const refPerRow = (sum(await usedMemory(redis)) - refBase) / referenceRows;

  const perRow = used / rows;
  console.log(JSON.stringify({
    rows,
    redis: redis instanceof Cluster ? 'cluster, 3 masters' : 'single',
    bytesPerRowPerMaster: perMaster.map((b) => round(b / rows, 2)),
    buckets,
    bucketsFor: bucketsFor(rows),
    recordBytes: RECORD_BYTES,
    redisUsedMemoryBytes: used,
    bytesPerRow: round(perRow, 2),
    memoryUsagePerRecordSampled: round(sampledBytes / sampledRecords, 2),
    sampledBuckets: sample.length,
    meanRecordsPerBucket: round(rows / buckets, 1),
    claimsPerSec: Math.round(rows / claimSeconds),
    fingerprintBits: fingerprintBits(buckets),
    falseDuplicatesObserved: falseDuplicates,
    falseDuplicatesExpected: expectedFalseDuplicates(rows, buckets),
    falseDuplicatesExpectedAt1e9Rows: expectedFalseDuplicates(1e9, bucketsFor(1e9)),
    planted,
    plantedFoundWithFirstKey: found,
    plantedClaimsPerSec: Math.round(planted / plantSeconds),
    reference: { layout: 'SET prefix:<sha256 hex> <key>', rows: referenceRows, bytesPerRow: round(refPerRow, 1), ratio: round(refPerRow / perRow, 1), claimsPerSec: Math.round(referenceRows / refSeconds) },
    loadAverage: loadavg().map((l) => round(l, 2)),
  }, null, 2));
} finally {
  redis.disconnect();
  await server.stop();
}
