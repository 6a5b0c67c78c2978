import type { Command } from 'commander';
import { COMMON_FLAGS, WORKER_FLAGS, addConfigFlags, loadFromFlags } from '../config/cli.ts';
import { CapfiltError } from '../core/errors.ts';
import type { StageName } from '../core/shard.ts';
import { describeStages, stageNames } from '../pipeline/stages/table.ts';
import { logger } from '../core/logger.ts';

function parseStages(v: string): StageName[] {
  const list = v.split(',').map((s) => s.trim()).filter(Boolean);
  const bad = list.filter((s) => !stageNames().includes(s));
  if (bad.length || list.length === 0) throw new CapfiltError('CLI_USAGE', `--stages expects a comma-separated list of ${stageNames().join(', ')}, got "${v}"`);
  return list as StageName[];
}

function positiveInt(flag: string, v: unknown): number | null {
  if (v === undefined) return null;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new CapfiltError('CLI_USAGE', `${flag} expects a positive integer, got "${String(v)}"`);
  return n;
}

export function register(program: Command): void {
  const cmd = program
    .command('worker')
    .description('a stateless stage worker: serves the named stage queues of every run on this Redis until SIGTERM/SIGINT');
  addConfigFlags(cmd, [...WORKER_FLAGS, ...COMMON_FLAGS])
    .option('--stages <list>', `stages to serve, comma-separated: ${describeStages()}`, stageNames().join(','))
    .option('--batch-size <n>', 'images per model batch in this process (overrides the run\'s caption/filter batch sizes)')
    .option('--concurrency <n>', 'shards processed at once per stage in this process')
    .option('--drain-ms <ms>', 'on SIGTERM/SIGINT, wait this long for running jobs before handing them back', '30000')
    .option('--metrics-port <port>', 'serve /metrics on <metrics-host>:<port> (0 picks a free one)')
    // Metrics hold counts and latencies, no data or controls; a scraper on another host needs a
    // non-loopback bind, which is still an explicit choice.
    .option('--metrics-host <addr>', 'address for /metrics (use 0.0.0.0 for a Prometheus on another host)', '127.0.0.1')
    .action(async (flags: Record<string, unknown>) => {
      const stages = parseStages(String(flags.stages));
      const concurrency = positiveInt('--concurrency', flags.concurrency);
      const loaded = loadFromFlags(flags, [...WORKER_FLAGS, ...COMMON_FLAGS], concurrency
        ? stages.map((s) => ({ path: `pipeline.concurrency.${s}`, value: concurrency, source: '--concurrency' }))
        : []);
      const config = loaded.config;
      const [{ redisReachable, redisUnavailable }, { WorkerHost }, { serveMetrics }, { probeStagingDir }] = await Promise.all([
        import('../workers/connection.ts'), import('../workers/host.ts'), import('../telemetry/metrics.ts'), import('../pipeline/staging/index.ts'),
      ]);
      if (!(await redisReachable(config.redis.url))) throw redisUnavailable(config.redis.url, `a worker joins an existing deployment: start Redis or set REDIS_URL / --redis-url (from ${loaded.sourceOf('redis.url')}).`);
      // A folder given here is used for every fs-staged run this worker serves: check it now (an
      // s3:// prefix, as in a config file shared with the coordinator, gets a put and delete).
      if (loaded.isExplicit('staging.dir') && config.staging.dir) await probeStagingDir(config.staging.dir, config);
      const log = logger().child({ role: 'worker' });
      const host = new WorkerHost({ config, stages, log, stagingDir: loaded.isExplicit('staging.dir') ? config.staging.dir : null, batchSize: positiveInt('--batch-size', flags.batchSize), drainMs: positiveInt('--drain-ms', flags.drainMs) ?? 30_000 });
      const metrics = flags.metricsPort !== undefined ? await serveMetrics({ host: String(flags.metricsHost), port: Number(flags.metricsPort) }) : null;
      await host.start();
      if (metrics) log.info({ url: metrics.url }, 'metrics');
      process.stdout.write(`capfilt worker ${process.pid}: serving ${stages.join(',')} on ${config.redis.url} (prefix ${config.redis.prefix})\n`);
      await new Promise<void>((resolve) => {
        const stop = (sig: NodeJS.Signals) => {
          log.info({ signal: sig }, 'draining');
          resolve();
        };
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      await host.close();
      await metrics?.close();
    });
}
