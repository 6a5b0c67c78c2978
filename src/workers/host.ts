import { hostname } from 'node:os';
import { Worker, type ConnectionOptions, type Job } from 'bullmq';
import type { RedisClient } from '../core/redis.ts';
import type { Logger } from 'pino';
import type { CapfiltConfig } from '../config/schema.ts';
import { describeError } from '../core/errors.ts';
import { RedisDuplicateIndex } from '../io/duplicates.ts';
import { isS3Url } from '../io/storage/s3-url.ts';
import { RedisTopFractionSketch, topFractionKey } from '../pipeline/top-fraction.ts';
import type { StageTable } from '../pipeline/stages/table.ts';
import { RunState } from '../pipeline/run-state.ts';
import { openStagingStore, stagingDir } from '../pipeline/staging/index.ts';
import type { StagingStore } from '../pipeline/staging/types.ts';
import { processMetrics } from '../telemetry/metrics.ts';
import { StatsWriter } from '../telemetry/stats.ts';
import { isRedisConnectionError, openRedis, outageReporter, redisAddress, releaseConnection, settlesWithin, workerConnection } from './connection.ts';
import { makeProcessor, settleFailedJob, type ProcessorDeps } from './processor.ts';
import { StageQueues, type ShardJobData } from './queues.ts';
import { StageRegistry, modelsServed } from './stages.ts';
import { runtimeSetting } from '../models/runtime/precision.ts';

/**
 * A worker process's stage workers: one BullMQ Worker per stage it serves, sharing one model
 * cache, one staging store per backend, one stats writer. Stateless: everything it needs about a
 * run comes from Redis, so any number of hosts can serve the same queues.
 *
 * Shutdown (`close`, wired to SIGTERM/SIGINT by the CLI): stop taking jobs and let the current
 * ones finish for up to `drainMs`; jobs still running then are aborted and moved back to wait
 * (no attempt used), and the lock is released for another worker. Jobs that do not let go
 * within `closeTimeoutMs` after that (seen after a Redis restart: BullMQ's close() kept waiting
 * for jobs whose locks were lost in the outage) are abandoned: the workers' connections are dropped so that the
 * process can exit, and their jobs are taken over as stalled once their locks expire.
 *
 * Redis restarts: the host's own client queues commands until Redis is back (a job pauses
 * instead of failing), and connection errors are logged once per outage.
 */
export interface WorkerHostOptions {
  /** The host's own config: redis, pipeline concurrency and locks, models runtime (device). */
  config: CapfiltConfig;
  /** Stages this host serves: names of `table`. */
  stages: readonly string[];
  /** The stage table the host runs (default: the built-in one); every host of a deployment needs the same. */
  table?: StageTable;
  log: Logger;
  /** Per-process overrides of the run's batch sizes (`capfilt worker --batch-size`). */
  batchSize?: number | null;
  /**
   * This host's own fs staging folder (a shared filesystem mounted at another path here); by
   * default the folder the run's config names. Not used for s3 runs (their prefix is the run's).
   */
  stagingDir?: string | null;
  /** Write live stats for the dashboard (default true). */
  stats?: boolean;
  drainMs?: number;
  /** How long close() waits for the workers after cancelling their jobs (default 15 s). */
  closeTimeoutMs?: number;
}

const RUN_CACHE_MS = 5_000;

/** Shards at once per stage: `pipeline.concurrency.<stage>`, 1 for a stage the config does not list (one added to the table). */
function concurrencyOf(c: CapfiltConfig['pipeline'], stage: string): number {
  return (c.concurrency as Partial<Record<string, number>>)[stage] ?? 1;
}

export class WorkerHost {
  private readonly redis: RedisClient;
  private readonly queues: StageQueues;
  private readonly workers: Worker<ShardJobData>[] = [];
  private readonly connections: ConnectionOptions[] = [];
  private readonly registry: StageRegistry;
  private readonly stagings = new Map<string, StagingStore>();
  private readonly runs = new Map<string, { at: number; value: Promise<Awaited<ReturnType<ProcessorDeps['run']>>> }>();
  private readonly stats: StatsWriter | null;
  private heartbeat: { stop(): Promise<void> } | null = null;
  private closing: Promise<void> | null = null;
  readonly deps: ProcessorDeps;

  constructor(private readonly o: WorkerHostOptions) {
    this.redis = openRedis(o.config.redis.url, { waitForReconnect: true, log: o.log, name: 'worker host' });
    this.queues = new StageQueues(o.config.redis.url, o.config.redis.prefix, o.log);
    const prefix = o.config.redis.prefix;
    this.registry = new StageRegistry({
      // This host's model stages run side by side, each in its own inference thread.
      runtime: runtimeSetting(o.config.models, modelsServed(o.stages, o.table)),
      log: o.log,
      table: o.table,
      // Duplicates are detected run-wide, across every worker host, through the run's Redis.
      // The run's planned row count sizes its buckets (the first host to claim stores the size).
      duplicateIndex: (runId) =>
        new RedisDuplicateIndex(this.redis, `${prefix}:run:${runId}:dup`, {
          expectedRows: async () => (await new RunState(this.redis, prefix, runId).meta())?.totalRows ?? 0,
        }),
      // clip.topFraction's provisional threshold comes from every host's scores so far.
      topFractionSketch: (runId) => new RedisTopFractionSketch(this.redis, topFractionKey(prefix, runId)),
    });
    this.stats = o.stats === false ? null : new StatsWriter({ redis: this.redis, prefix: o.config.redis.prefix, metrics: processMetrics() });
    this.deps = {
      queues: this.queues,
      log: o.log,
      stats: this.stats,
      run: (runId) => this.run(runId),
      stage: (stage, config) => this.registry.get(stage, config),
    };
  }

  private staging(runConfig: CapfiltConfig): StagingStore {
    // Only a folder overrides: an s3 run's prefix is the same URL on every host.
    const own = this.o.stagingDir && runConfig.staging.backend === 'fs' && !isS3Url(this.o.stagingDir) ? this.o.stagingDir : null;
    const config = own ? { ...runConfig, staging: { ...runConfig.staging, dir: own } } : runConfig;
    const key = config.staging.backend === 'redis' ? 'redis' : `${config.staging.backend}:${stagingDir(config)}`;
    let s = this.stagings.get(key);
    if (!s) {
      s = openStagingStore(config, this.redis);
      this.stagings.set(key, s);
    }
    return s;
  }

  private run(runId: string): ReturnType<ProcessorDeps['run']> {
    const hit = this.runs.get(runId);
    if (hit && Date.now() - hit.at < RUN_CACHE_MS) return hit.value;
    const value = (async () => {
      const state = new RunState(this.redis, this.o.config.redis.prefix, runId);
      const runConfig = await state.config();
      if (!runConfig) return null;
      const config: CapfiltConfig = this.o.batchSize
        ? { ...runConfig, caption: { ...runConfig.caption, batchSize: this.o.batchSize }, filter: { ...runConfig.filter, batchSize: this.o.batchSize } }
        : runConfig;
      return { state, config, staging: this.staging(config) };
    })();
    value.catch(() => this.runs.delete(runId));
    this.runs.set(runId, { at: Date.now(), value });
    return value;
  }

  async start(): Promise<void> {
    const c = this.o.config.pipeline;
    for (const stage of this.o.stages) {
      const connection = workerConnection(this.o.config.redis.url);
      this.connections.push(connection);
      const w = new Worker<ShardJobData>(this.queues.nameOf(stage), makeProcessor(stage, this.deps), {
        connection,
        prefix: this.o.config.redis.prefix,
        concurrency: concurrencyOf(c, stage),
        lockDuration: c.lockDurationMs,
        stalledInterval: c.stalledIntervalMs,
        maxStalledCount: c.maxStalledCount,
        autorun: false,
      });
      w.on('failed', (job: Job<ShardJobData> | undefined, err: Error) => {
        if (!job) return;
        void (async () => {
          if (!(await job.isFailed())) return;
          this.o.log.warn({ stage, runId: job.data.runId, shardId: job.data.shardId, err: describeError(err) }, 'job failed for good; settling its shard');
          await settleFailedJob(stage, job, err, this.deps);
        })().catch((e: unknown) => this.o.log.error({ err: describeError(e) }, 'settling a failed job failed'));
      });
      // Every reconnect attempt of a worker's connections is an error event: one line per outage.
      const outage = outageReporter(redisAddress(this.o.config.redis.url), `${stage} worker`, this.o.log);
      w.on('error', (err) => {
        if (isRedisConnectionError(err)) outage.error(err);
        else this.o.log.error({ stage, err: describeError(err) }, 'worker error');
      });
      this.workers.push(w);
      void w.run();
    }
    await Promise.all(this.workers.map((w) => w.waitUntilReady()));
    if (this.stats) {
      this.heartbeat = this.stats.startHeartbeat({
        host: hostname(),
        stages: [...this.o.stages],
        device: this.o.config.models.device,
        concurrency: Math.max(...this.o.stages.map((s) => concurrencyOf(c, s))),
      });
    }
    this.o.log.info({ stages: this.o.stages, prefix: this.o.config.redis.prefix, device: this.o.config.models.device }, 'workers started');
  }

  /** Preloads models for the stages this host serves (so the first job does not pay for it). */
  async warm(config: CapfiltConfig): Promise<void> {
    for (const stage of this.o.stages) await this.registry.get(stage, config);
  }

  /** Model ids and hashes for run.json (only of the roles of the stages this host serves). */
  modelInfo(config: CapfiltConfig): Promise<Record<string, unknown> | null> {
    return this.registry.modelInfo(config, this.o.stages);
  }

  close(drainMs = this.o.drainMs ?? 30_000, closeTimeoutMs = this.o.closeTimeoutMs ?? 15_000): Promise<void> {
    this.closing ??= (async () => {
      // Each later step talks to Redis too; none may hold the exit longer than this.
      const step = Math.min(5_000, closeTimeoutMs);
      const timer = setTimeout(() => {
        this.o.log.warn({ drainMs }, 'drain timeout: releasing running jobs to the queue');
        for (const w of this.workers) w.cancelAllJobs('worker shutting down');
      }, drainMs);
      timer.unref();
      const closed = Promise.all(this.workers.map((w) => w.close()));
      if (!(await settlesWithin(closed, drainMs + closeTimeoutMs))) {
        this.o.log.error(
          { drainMs, closeTimeoutMs },
          `workers did not stop ${Math.round(closeTimeoutMs / 1000)} s after their jobs were cancelled; dropping their connections (their jobs are taken over as stalled when the locks expire)`,
        );
        await settlesWithin(Promise.all(this.workers.map((w) => w.disconnect())), step);
      }
      clearTimeout(timer);
      if (this.heartbeat) await settlesWithin(this.heartbeat.stop(), step);
      if (!(await settlesWithin(this.queues.close(), step))) await settlesWithin(this.queues.disconnect(), step);
      await this.registry.close();
      for (const s of this.stagings.values()) await settlesWithin(s.close(), step);
      for (const c of this.connections) releaseConnection(c);
      this.redis.disconnect();
      this.o.log.info('workers stopped');
    })();
    return this.closing;
  }
}
