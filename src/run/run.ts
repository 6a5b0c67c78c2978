import { rmdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import type { LoadedConfig } from '../config/load.ts';
import type { CapfiltConfig } from '../config/schema.ts';
import { CapfiltError, isCapfiltError } from '../core/errors.ts';
import { isS3Url } from '../io/storage/s3-url.ts';
import { sumShardStats } from '../io/writers/stats.ts';
import { StatsWriter } from '../telemetry/stats.ts';
import { RedisOutage, checkEvictionPolicy, openRedis, settlesWithin } from '../workers/connection.ts';
import { WorkerHost } from '../workers/host.ts';
import { StageQueues } from '../workers/queues.ts';
import { resolveRedis, type RedisEndpoint } from '../workers/redis-setup.ts';
import { feed } from './feeder.ts';
import { countRows, listInputFiles, readRows } from '../pipeline/input.ts';
import { writeRunReport } from '../report/index.ts';
import { preflight } from './preflight.ts';
import { createProgress, stageRowsOf, type ProgressMode } from './progress.ts';
import { finishedShardCounts } from '../pipeline/resume.ts';
import { openOutput, resolveLocation } from '../io/storage/output.ts';
import { RunState, type RunTotals } from '../pipeline/run-state.ts';
import { inputLocation, planShards, runIdFor } from '../pipeline/shards.ts';
import { openStagingStore, stagingDir } from '../pipeline/staging/index.ts';
import { checkChain, outputColumns, type StageTable } from '../pipeline/stages/table.ts';
import { RedisTopFractionSketch, topFractionKey } from '../pipeline/top-fraction.ts';
import { finishTopFraction } from './rethreshold.ts';
import { writeRunSummary, type RunSummary } from './summary.ts';

/**
 * `capfilt run` as a library call: resolve Redis, take the run's lock, plan the input into
 * shards, publish the run's config, start the stage workers in this process (unless told not
 * to), feed shards with backpressure, follow progress until every shard is written or failed
 * for good, and write run.json. Interrupting (signal) stops feeding, drains the in-process
 * workers and leaves the run resumable: rerunning the same command continues it.
 *
 * A Redis that restarts mid-run (or fails over) is waited for: following progress and feeding
 * retry their Redis work after a pause until it answers again, and give up with REDIS_LOST
 * after `redis.outageTimeoutMs`. With its AOF on, Redis comes back with the queues and run
 * state, and the run continues where it was.
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
  /**
   * The stage table of the in-process workers (default: the built-in one); `config.pipeline.stages`
   * names stages of it. Workers on other hosts must run the same table.
   */
  table?: StageTable;
  /** Called once the run is planned, e.g. to print where the dashboard is. */
  onPlanned?(info: { runId: string; redisUrl: string; totalRows: number; totalShards: number; config: CapfiltConfig }): void | Promise<void>;
}

export async function runPipeline(o: RunOptions): Promise<RunSummary> {
  const t0 = Date.now();
  const base = o.loaded.config;
  if (!base.input.path) throw new CapfiltError('CONFIG_INVALID', 'option input.path: expected an input file or folder (--input), got null');
  if (!base.output.dir) throw new CapfiltError('CONFIG_INVALID', 'option output.dir: expected an output folder (--out), got null');
  checkChain(base.pipeline.stages, o.table);
  await preflight({ config: base, log: o.log, workers: o.workers && !o.host, table: o.table });
  const endpoint = o.redis ?? (await resolveRedis(o.loaded, o.log));
  const config: CapfiltConfig = {
    ...base,
    redis: { ...base.redis, url: endpoint.url },
    input: { ...base.input, path: inputLocation(base.input.path) },
    output: { ...base.output, dir: resolveLocation(base.output.dir) },
    staging: { ...base.staging, dir: base.staging.dir && !isS3Url(base.staging.dir) ? resolve(base.staging.dir) : base.staging.dir },
  };
  const out = config.output.dir!;
  const output = openOutput(out, config.s3);
  const redis = openRedis(endpoint.url, { log: o.log, name: 'coordinator' });
  const queues = new StageQueues(endpoint.url, config.redis.prefix, o.log);
  const staging = openStagingStore(config, redis);
  const stats = new StatsWriter({ redis, prefix: config.redis.prefix });
  const runId = runIdFor(out);
  const run = new RunState(redis, config.redis.prefix, runId);
  let host: WorkerHost | null = null;
  let release: (() => Promise<void>) | null = null;
  const ctrl = new AbortController();
  const onAbort = () => ctrl.abort(o.signal?.reason);
  o.signal?.addEventListener('abort', onAbort, { once: true });
  const outage = new RedisOutage({ url: endpoint.url, log: o.log, maxOutageMs: config.redis.outageTimeoutMs, signal: ctrl.signal });
  const guard = <T>(what: string, fn: () => Promise<T>) => outage.run(what, fn);
  let progress = createProgress('none', 0, o.log);
  let redisLost = false;
  let tidyStaging: (() => Promise<void>) | null = null;
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
    const attempt = await run.begin(config, { input: inputRoot, out, stages: config.pipeline.stages, totalRows, totalShards: shards.length, skippedShards: 0, startedAt: t0 });
    await stats.registerRun({
      runId, input: inputRoot, out, totalRows, totalShards: shards.length, stages: config.pipeline.stages,
      queuePrefix: config.redis.prefix, queues: Object.fromEntries(config.pipeline.stages.map((s) => [s, queues.nameOf(s)])),
      itmThreshold: config.filter.itmThreshold, itcThreshold: config.filter.itcThreshold, labels: o.labels ?? {}, state: 'running', startedAt: t0,
      ...(config.pipeline.stages.includes('clip') ? { clipMinScore: config.clip.minScore } : {}),
    });
    o.log.info({ runId, input: inputRoot, out, files: files.length, totalRows, shards: shards.length, stages: config.pipeline.stages, redis: endpoint.url, staging: config.staging.backend }, 'run planned');
    await o.onPlanned?.({ runId, redisUrl: endpoint.url, totalRows, totalShards: shards.length, config });

    if (o.workers && !o.host) {
      host = new WorkerHost({ config, stages: config.pipeline.stages, table: o.table, log: o.log.child({ role: 'worker' }) });
      // Load the models before feeding: a wrong model folder fails the run now, not per shard.
      await host.warm(config);
      await host.start();
    }
    // A new attempt's provisional top-fraction threshold starts from its own shards (the final pass reads every parquet).
    const sketch = config.clip.topFraction !== null ? new RedisTopFractionSketch(redis, topFractionKey(config.redis.prefix, runId)) : null;
    await sketch?.reset();
    await run.update({ status: 'running' });
    progress = createProgress(o.progress, totalRows, o.log, undefined, undefined, config.pipeline.stages);

    let skippedShards = 0;
    let skippedRows = 0;
    let fed: Error | null = null;
    let feeding = true;
    const feeder = feed(
      {
        config, run, staging, queues, log: o.log, signal: ctrl.signal, attempt, guard,
        rows: (file) => readRows(file, config),
        finished: (shard) => finishedShardCounts(output.store, shard),
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
      const now = await outage
        .run('following progress', async () => ({ totals: await run.totals(), failed: await run.failedShards(), inFlight: await run.inFlight(), stages: await stageRowsOf(redis, config.redis.prefix, runId) }))
        .catch((e: unknown) => {
          // Interrupted while Redis is away: stop following and report what is known.
          if (ctrl.signal.aborted) return null;
          throw e;
        });
      if (now) {
        totals = now.totals;
        failedShards = now.failed;
        progress.update(totals, { inFlight: now.inFlight, skippedRows, stages: now.stages });
      }
      if (ctrl.signal.aborted) break;
      if (fed) throw fed;
      if (!feeding && totals.shards + Object.keys(failedShards).length >= shards.length) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    // An interrupted feeder stops at its next Redis call; one waiting on a Redis that is gone
    // would hold the interrupt for ever.
    if (ctrl.signal.aborted) await settlesWithin(feeder, 5_000);
    else await feeder;
    progress.stop();
    const interrupted = ctrl.signal.aborted;
    if (interrupted && host) {
      // Let the in-process workers finish or hand back their jobs, then report what was written.
      await host.close();
      host = null;
      totals = await guard('reading totals', () => run.totals());
      failedShards = await guard('reading failed shards', () => run.failedShards());
    }
    const doneShards = await guard('reading shard counts', () => run.doneShards());
    const rowsOfFailed = shards.filter((s) => failedShards[s.shardId]).reduce((n, s) => n + s.rowCount, 0);
    const summary: RunSummary = {
      runId, input: inputRoot, out,
      status: interrupted ? 'interrupted' : Object.keys(failedShards).length ? 'failed' : 'done',
      stages: config.pipeline.stages,
      totalRows, totalShards: shards.length,
      rows: totals.rows, kept: totals.kept, filtered: totals.filtered, failed: totals.failed,
      shardsWritten: totals.shards - skippedShards, shardsSkipped: skippedShards,
      failedShards, rowsInFailedShards: rowsOfFailed,
      reconciled: !interrupted && totals.rows + rowsOfFailed === totalRows && totals.kept + totals.filtered + totals.failed === totals.rows && doneShards === totals.shards,
      seconds: (Date.now() - t0) / 1000,
      rowsPerSec: (totals.rows - skippedRows) / Math.max(0.001, (Date.now() - t0) / 1000),
      redisUrl: endpoint.url,
      config,
      labels: o.labels ?? {},
    };
    if (!interrupted && sketch && config.clip.topFraction !== null) {
      // DataComp's rule over the whole run: the exact threshold from the parquet scores, rows moved in place.
      const sketchThreshold = (await guard('reading the CLIP histogram', () => sketch.read())).topThreshold(config.clip.topFraction);
      const pass = await finishTopFraction(output, {
        itmThreshold: config.filter.itmThreshold, itcThreshold: config.filter.itcThreshold, selection: config.filter.selection,
        keepTop: config.caption.keepTop, selectBy: config.caption.selectBy, clipMinScore: config.clip.minScore, clipTopFraction: config.clip.topFraction,
      }, outputColumns(o.table));
      const delta = { kept: pass.kept - summary.kept, filtered: pass.filtered - summary.filtered };
      await guard('recording the final pass', () => run.adjustTotals(delta));
      summary.kept = pass.kept;
      summary.filtered = pass.filtered;
      summary.clipTopFraction = { ...pass.topFraction, sketchThreshold };
      o.log.info({ ...summary.clipTopFraction }, 'clip top fraction: final pass done');
    }
    await guard('recording the run\'s end', () => run.update({ status: summary.status, finishedAt: Date.now(), skippedShards, error: summary.status === 'failed' ? `${Object.keys(failedShards).length} shards failed` : null }));
    await stats.finishRun(runId, summary.status === 'done' ? 'finished' : summary.status === 'interrupted' ? 'cancelled' : 'failed').catch(() => undefined);
    if (!interrupted && config.staging.backend === 'fs') {
      // Written shards delete their staging; remove the emptied folders too (rmdir refuses
      // non-empty ones). Again once in-process workers have stopped: a shard recorded as done can
      // still be deleting its staging now, which left an empty folder behind.
      const dir = stagingDir(config);
      tidyStaging = async () => {
        if (dir) for (const d of [join(dir, runId), dir]) await rmdir(d).catch(() => undefined);
      };
      await tidyStaging();
    }
    if (!interrupted && config.pipeline.stages.includes('clip')) {
      const c = await sumShardStats(output.store, shards.map((x) => x.outputName));
      summary.rejectedBy = c.rejectedBy;
      if (config.clip.labels) summary.labelCounts = c.labelCounts ?? {};
      if (config.clip.saveEmbeddings) summary.embeddingsWritten = c.embeddingsWritten ?? 0;
    }
    const modelHost = host ?? o.host;
    if (!interrupted) await writeRunSummary(summary, modelHost ? await modelHost.modelInfo(config).catch(() => null) : null, output);
    if (!interrupted) summary.report = await writeRunReport(output, o.log);
    return summary;
  } catch (e) {
    // After REDIS_LOST nothing can be recorded (and the lock expires by itself).
    redisLost = isCapfiltError(e, 'REDIS_LOST');
    if (!redisLost) await run.update({ status: ctrl.signal.aborted ? 'interrupted' : 'failed', finishedAt: Date.now(), error: (e as Error).message }).catch(() => undefined);
    throw e;
  } finally {
    progress.stop();
    o.signal?.removeEventListener('abort', onAbort);
    // Without Redis no job can finish or be handed back: cancel them at once, wait briefly.
    if (host) await (redisLost ? host.close(0, 2_000) : host.close());
    await tidyStaging?.();
    if (redisLost) await settlesWithin(queues.disconnect(), 2_000);
    // Bounded: a Redis that went away while closing must not hold the exit.
    else if (!(await settlesWithin(queues.close(), 5_000))) await settlesWithin(queues.disconnect(), 5_000);
    await settlesWithin(staging.close(), 5_000);
    if (release && !redisLost) await release().catch(() => undefined);
    redis.disconnect();
    if (!o.redis) await endpoint.stop();
  }
}
