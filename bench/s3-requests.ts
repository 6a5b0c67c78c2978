/**
 * S3 requests a run makes, counted on a real S3-compatible server (s3rver on loopback): the
 * pipeline (download → write, or with --models download → caption → filter → write on the demo
 * model) over a loopback image server, output to s3://, staging fs (default) or s3 (--staging s3).
 * Every request the run's S3 client sends is counted by command at the SDK's initialize step,
 * once per call, above the SDK's own retries (`npm run bench:s3-requests -- --rows 200 --shard-rows 50`).
 * Prints one JSON object: requests per shard and per row, by command, and which of them are the output's.
 */
import { parseArgs } from 'node:util';
import { logger } from '../src/core/logger.ts';
import { closeS3Clients, s3Client } from '../src/io/storage/s3-client.ts';
import { startPrivateRedis } from '../src/workers/private-redis.ts';
import { runPipeline } from '../src/run/run.ts';
import { fixtureConfig, startFixture } from '../test/helpers/pipeline-fixture.ts';
import { startS3Server } from '../test/helpers/s3-server.ts';

const { values } = parseArgs({
  options: {
    rows: { type: 'string', default: '200' },
    'shard-rows': { type: 'string', default: '50' },
    staging: { type: 'string', default: 'fs' },
    models: { type: 'boolean', default: false },
  },
});
const rows = Number(values.rows);
const shardRows = Number(values['shard-rows']);
const staging = values.staging === 's3' ? 's3' : 'fs';

const [fx, s3, redis] = await Promise.all([startFixture(rows, { failEvery: 1_000_000 }), startS3Server(), startPrivateRedis()]);
if (!redis) throw new Error('bench:s3-requests needs redis-server on PATH (it starts a private one)');
try {
  await s3.createBucket('capfilt-bench');
  const out = 's3://capfilt-bench/out/';
  const loaded = fixtureConfig(fx, out, {
    'shards.rows': shardRows, 'staging.backend': staging, ...(staging === 's3' ? { 'staging.dir': 's3://capfilt-bench/stage/' } : {}),
    ...(values.models ? { 'pipeline.stages': 'download,caption,filter,write', 'models.captioner': 'models/demo', 'models.filter': 'models/demo' } : {}),
    ...Object.fromEntries(Object.entries(s3.options).map(([k, v]) => [`s3.${k}`, v])),
  }, { REDIS_URL: redis.url });
  const counts: Record<string, number> = {};
  const output: Record<string, number> = {};
  s3Client(loaded.config.s3).middlewareStack.add(
    (next, context) => async (args) => {
      const command = (context.commandName ?? 'unknown').replace(/Command$/, '');
      counts[command] = (counts[command] ?? 0) + 1;
      const input = args.input as { Key?: string; Prefix?: string; Delete?: { Objects?: { Key?: string }[] } };
      const key = input.Key ?? input.Prefix ?? input.Delete?.Objects?.[0]?.Key ?? '';
      if (key.startsWith('out/')) output[command] = (output[command] ?? 0) + 1;
      return next(args);
    },
    { step: 'initialize', name: 'count' },
  );
  const t0 = Date.now();
  const s = await runPipeline({ loaded, workers: true, progress: 'none', log: logger().child({ bench: 's3-requests' }) });
  const shards = s.totalShards;
  const per = (c: Record<string, number>, n: number) => Object.fromEntries(Object.entries(c).sort().map(([k, v]) => [k, Math.round((v / n) * 100) / 100]));
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  const outTotal = Object.values(output).reduce((a, b) => a + b, 0);
  process.stdout.write(`${JSON.stringify({
    bench: 's3-requests', rows, shardRows, shards, staging, stages: loaded.config.pipeline.stages, status: s.status, reconciled: s.reconciled, seconds: (Date.now() - t0) / 1000,
    requests: { total, perShard: Math.round((total / shards) * 100) / 100, perRow: Math.round((total / rows) * 1000) / 1000, byCommand: counts },
    output: { total: outTotal, perShard: per(output, shards) },
    other: { perRow: per(Object.fromEntries(Object.entries(counts).map(([k, v]) => [k, v - (output[k] ?? 0)]).filter(([, v]) => (v as number) > 0)), rows) },
  })}\n`);
} finally {
  closeS3Clients();
  await Promise.all([fx.close(), s3.dispose(), redis.stop()]);
}
