import { rmdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import type { LoadedConfig } from '../config/load.ts';
import type { CapfiltConfig } from '../config/schema.ts';
import { CapfiltError } from '../errors.ts';
import { StatsWriter } from '../telemetry/stats.ts';
import { checkEvictionPolicy, openRedis, workerConnection } from '../workers/connection.ts';
import { WorkerHost } from '../workers/host.ts';
import { StageQueues } from '../workers/queues.ts';
import { resolveRedis, type RedisEndpoint } from '../workers/redis-setup.ts';
import { feed } from './feeder.ts';
import { countRows, listInputFiles, readRows } from './input.ts';
import { createProgress, type ProgressMode } from './progress.ts';
import { finishedShardCounts } from './resume.ts';
import { RunState, type RunTotals } from './run-state.ts';
import { planShards, runIdFor } from './shards.ts';
import { openStagingStore, stagingDir } from './staging/index.ts';
import { writeRunSummary, type RunSummary } from './summary.ts';

/**
 * `capfilt run` as a library call: resolve Redis, take the run's lock, plan the input into
 * shards, publish the run's config, start the stage workers in this process (unless told not
 * to), feed shards with backpressure, follow progress until every shard is written or failed
 * for good, and write run.json. Interrupting (signal) stops feeding, drains the in-process
 * workers and leaves the run resumable: rerunning the same command continues it.
 */
export interface RunOptions {
  loaded: LoadedConfig;
  /** Run the stage workers in this process (the single-machine default). */
  workers: boolean;
  /**
   * A started worker host owned by the caller (e.g. a benchmark that loaded the models before
   * timing); used instead of starting one, and not closed.
   */
  host?: WorkerHost;
  progress: ProgressMode;
  log: Logger;
  signal?: AbortSignal;
  /** Extra fields for run.json (e.g. the demo's ground truth summary). */
  labels?: Record<string, string>;
  /** A Redis already resolved by the caller (who then also stops it); default: resolveRedis. */
  redis?: RedisEndpoint;
  /** Called once the run is planned, e.g. to print where the dashboard is. */
  onPlanned?(info: { runId: string; redisUrl: string; totalRows: number; totalShards: number; config: CapfiltConfig }): void | Promise<void>;
}

export async function runPipeline(o: RunOptions): Promise<RunSummary> {
  const t0 = Date.now();
  const base = o.loaded.config;
  if (!base.input.path) throw new CapfiltError('CONFIG_INVALID', 'option input.path: expected an input file or folder (--input), got null');
  if (!base.output.dir) throw new CapfiltError('CONFIG_INVALID', 'option output.dir: expected an output folder (--out), got null');
  const endpoint = o.redis ?? (await resolveRedis(o.loaded, o.log));
  const config: CapfiltConfig = {
    ...base,
    redis: { ...base.redis, url: endpoint.url },
    input: { ...base.input, path: resolve(base.input.path) },
    output: { ...base.output, dir: resolve(base.output.dir) },
    staging: { ...base.staging, dir: base.staging.dir ? resolve(base.staging.dir) : null },
  };
  const out = config.output.dir!;
  const redis = openRedis(endpoint.url);
  const queues = new StageQueues(workerConnection(endpoint.url), config.redis.prefix);
  const staging = openStagingStore(config, redis);
  const stats = new StatsWriter({ redis, prefix: config.redis.prefix });
  const runId = runIdFor(out);
  const run = new RunState(redis, config.redis.prefix, runId);
  let host: WorkerHost | null = null;
  let release: (() => Promise<void>) | null = null;
  const ctrl = new AbortController();
  const onAbort = () => ctrl.abort(o.signal?.reason);
  o.signal?.addEventListener('abort', onAbort, { once: true });
  let progress = createProgress('none', 0, o.log);
  try {
    const warning = await checkEvictionPolicy(redis);
    if (warning) o.log.warn(warning);
    release = await run.acquire();

    const files = await listInputFiles(config);
    const counted = [];
    for (const file of files) counted.push({ file, rows: await countRows(file, config) });
    const inputRoot = config.input.path!;
    const shards = planShards(runId, inputRoot, counted, config.shards.rows);
    const totalRows = counted.reduce((n, f) => n + f.rows, 0);
    await run.begin(config, { input: inputRoot, out, stages: config.pipeline.stages, totalRows, totalShards: shards.length, skippedShards: 0, startedAt: t0 });
    await stats.registerRun({
      runId, input: inputRoot, out, totalRows, totalShards: shards.length, stages: config.pipeline.stages,
      queuePrefix: config.redis.prefix, queues: Object.fromEntries(config.pipeline.stages.map((s) => [s, s])),
      itmThreshold: config.filter.itmThreshold, itcThreshold: config.filter.itcThreshold, labels: o.labels ?? {}, state: 'running', startedAt: t0,
    });
    o.log.info({ runId, input: inputRoot, out, files: files.length, totalRows, shards: shards.length, stages: config.pipeline.stages, redis: endpoint.url, staging: config.staging.backend }, 'run planned');
    await o.onPlanned?.({ runId, redisUrl: endpoint.url, totalRows, totalShards: shards.length, config });

    if (o.workers && !o.host) {
      host = new WorkerHost({ config, stages: config.pipeline.stages, log: o.log.child({ role: 'worker' }) });
      // Load the models before feeding: a wrong model folder fails the run now, not per shard.
      await host.warm(config);
      await host.start();
    }
    await run.update({ status: 'running' });
    progress = createProgress(o.progress, totalRows, o.log);

    let skippedShards = 0;
    let skippedRows = 0;
    let fed: Error | null = null;
    let feeding = true;
    const feeder = feed(
      {
        config, run, staging, queues, log: o.log, signal: ctrl.signal,
        rows: (file) => readRows(file, config),
        finished: (shard) => finishedShardCounts(out, shard),
        onShard: (shard, event) => {
          if (event === 'skipped') {
            skippedShards++;
            skippedRows += shard.rowCount;
          }
        },
      },
      shards,
    ).catch((e: Error) => {
      fed = e;
    }).finally(() => {
      feeding = false;
    });

    let totals: RunTotals = await run.totals();
    let failedShards: Record<string, string> = {};
    for (;;) {
      totals = await run.totals();
      failedShards = await run.failedShards();
      progress.update(totals, { inFlight: await run.inFlight(), skippedRows });
      if (ctrl.signal.aborted) break;
      if (fed) throw fed;
      if (!feeding && totals.shards + Object.keys(failedShards).length >= shards.length) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    await feeder;
    progress.stop();
    const interrupted = ctrl.signal.aborted;
    if (interrupted && host) {
      // Let the in-process workers finish or hand back their jobs, then report what was written.
      await host.close();
      host = null;
      totals = await run.totals();
      failedShards = await run.failedShards();
    }
    const doneCounts = await run.doneCounts();
    const rowsOfFailed = shards.filter((s) => failedShards[s.shardId]).reduce((n, s) => n + s.rowCount, 0);
    const summary: RunSummary = {
      runId, input: inputRoot, out,
      status: interrupted ? 'interrupted' : Object.keys(failedShards).length ? 'failed' : 'done',
      stages: config.pipeline.stages,
      totalRows, totalShards: shards.length,
      rows: totals.rows, kept: totals.kept, filtered: totals.filtered, failed: totals.failed,
      shardsWritten: totals.shards - skippedShards, shardsSkipped: skippedShards,
      failedShards, rowsInFailedShards: rowsOfFailed,
      reconciled: !interrupted && totals.rows + rowsOfFailed === totalRows && totals.kept + totals.filtered + totals.failed === totals.rows && Object.keys(doneCounts).length === totals.shards,
      seconds: (Date.now() - t0) / 1000,
      rowsPerSec: (totals.rows - skippedRows) / Math.max(0.001, (Date.now() - t0) / 1000),
      redisUrl: endpoint.url,
      config,
      labels: o.labels ?? {},
    };
    await run.update({ status: summary.status, finishedAt: Date.now(), skippedShards, error: summary.status === 'failed' ? `${Object.keys(failedShards).length} shards failed` : null });
    await stats.finishRun(runId, summary.status === 'done' ? 'finished' : summary.status === 'interrupted' ? 'cancelled' : 'failed').catch(() => undefined);
    if (!interrupted && config.staging.backend === 'fs') {
      // Written shards delete their staging; remove the emptied folders too (rmdir refuses non-empty ones).
      const dir = stagingDir(config);
      if (dir) for (const d of [join(dir, runId), dir]) await rmdir(d).catch(() => undefined);
    }
    const modelHost = host ?? o.host;
    if (!interrupted) await writeRunSummary(summary, modelHost ? await modelHost.modelInfo(config).catch(() => null) : null);
    return summary;
  } catch (e) {
    await run.update({ status: ctrl.signal.aborted ? 'interrupted' : 'failed', finishedAt: Date.now(), error: (e as Error).message }).catch(() => undefined);
    throw e;
  } finally {
    progress.stop();
    o.signal?.removeEventListener('abort', onAbort);
    if (host) await host.close();
    await queues.close();
    await staging.close();
    if (release) await release().catch(() => undefined);
    redis.disconnect();
    if (!o.redis) await endpoint.stop();
  }
}
