import { Queue, type ConnectionOptions, type JobsOptions } from 'bullmq';
import type { Logger } from 'pino';
import type { CapfiltConfig } from '../config/schema.ts';
import { outageReporter, queueName, redisAddress, releaseConnection, workerConnection } from './connection.ts';

/**
 * The stage queues: one BullMQ queue per stage, named after the stage (hash-tagged on a Redis
 * Cluster: `queueName`), under the deployment's key prefix (`redis.prefix`), shared by every run
 * of the deployment. A job carries only ids;
 * its job id is derived from (run, shard, stage), so adding the same step twice (a retried
 * processor, a resumed run re-feeding a shard) yields one job.
 */
export interface ShardJobData {
  runId: string;
  shardId: string;
  /** Set on a write job that settles a shard whose earlier stage failed for good. */
  failure?: { stage: string; code: string; message: string };
  /**
   * The shard's output base name and row count: enough to find a finished shard's parquet
   * when its staging is gone (a job left over from an earlier attempt of the run).
   */
  output?: { name: string; rows: number };
  /** The run attempt (RunState.begin) that fed the shard's chain; older jobs are leftovers. */
  attempt?: number;
}

export function jobIdOf(stage: string, runId: string, shardId: string): string {
  // BullMQ refuses ":" in custom ids (it is its key separator).
  return `${runId}.${shardId}.${stage}`;
}

export function jobOptions(config: CapfiltConfig): JobsOptions {
  return {
    attempts: config.pipeline.attempts,
    backoff: { type: 'exponential', delay: config.pipeline.backoffMs },
    // Run state lives in the run's keys and output files; finished jobs would only cost memory.
    removeOnComplete: true,
    removeOnFail: { age: 7 * 24 * 3600 },
  };
}

export function nextStage(stages: readonly string[], current: string): string | null {
  const i = stages.indexOf(current);
  return i >= 0 && i + 1 < stages.length ? stages[i + 1] : null;
}

export class StageQueues {
  private readonly queues = new Map<string, Queue<ShardJobData>>();

  private readonly report: ReturnType<typeof outageReporter>;
  private readonly connection: ConnectionOptions;

  constructor(
    private readonly url: string,
    readonly prefix: string,
    log?: Logger,
  ) {
    this.connection = workerConnection(url);
    // Without a listener BullMQ prints every reconnect error of a queue with console.error.
    this.report = outageReporter(redisAddress(url), 'stage queues', log);
  }

  /** The BullMQ queue name of a stage (what a Worker for it must consume). */
  nameOf(stage: string): string {
    return queueName(this.url, this.prefix, stage);
  }

  get(stage: string): Queue<ShardJobData> {
    let q = this.queues.get(stage);
    if (!q) {
      q = new Queue<ShardJobData>(this.nameOf(stage), { connection: this.connection, prefix: this.prefix });
      q.on('error', (e) => this.report.error(e));
      this.queues.set(stage, q);
    }
    return q;
  }

  /**
   * Adds the shard's job for `stage` unless it already exists. A job left failed by an earlier
   * attempt of the run is removed first, so that a rerun processes the shard again; so is a
   * finished one that was not removed and one in no state at all (its hash survived, its queue
   * entry did not): either would block the id forever. A settling write (`failure`) that finds
   * the shard's write job already there (a leftover waiting for its shard's stages) hands it
   * the failure, or that job would wait for stages that will not run.
   */
  async enqueue(stage: string, data: ShardJobData, config: CapfiltConfig): Promise<void> {
    const q = this.get(stage);
    const id = jobIdOf(stage, data.runId, data.shardId);
    const existing = await q.getJob(id);
    if (existing) {
      const state = await existing.getState();
      if (state === 'failed' || state === 'completed' || state === 'unknown') await existing.remove().catch(() => undefined);
      else if (data.failure && !existing.data?.failure) await existing.updateData({ ...existing.data, ...data });
    }
    await q.add(stage, data, { ...jobOptions(config), jobId: id });
  }

  async counts(): Promise<Record<string, Record<string, number>>> {
    const out: Record<string, Record<string, number>> = {};
    for (const [name, q] of this.queues) out[name] = await q.getJobCounts('wait', 'active', 'delayed', 'failed', 'prioritized');
    return out;
  }

  /** Drops the queues' connections without waiting for Redis (shutdown after Redis is gone). */
  async disconnect(): Promise<void> {
    await Promise.all([...this.queues.values()].map((q) => q.disconnect().catch(() => undefined)));
    this.queues.clear();
    releaseConnection(this.connection);
  }

  async close(): Promise<void> {
    await Promise.all([...this.queues.values()].map((q) => q.close()));
    this.queues.clear();
    releaseConnection(this.connection);
  }
}
