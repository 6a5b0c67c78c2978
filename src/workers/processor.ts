import { setMaxListeners } from 'node:events';
import { DelayedError, UnrecoverableError, WaitingError, type Job } from 'bullmq';
import type { Logger } from 'pino';
import type { CapfiltConfig } from '../config/schema.ts';
import { CapfiltError, codeAndText, describeError, isCapfiltError, retryKindOf } from '../core/errors.ts';
import { countStatuses, finalizeRecords } from '../pipeline/decisions.ts';
import { openOutput } from '../io/storage/output.ts';
import { finishedShardCounts } from '../pipeline/resume.ts';
import type { RunState } from '../pipeline/run-state.ts';
import type { StageContext } from '../pipeline/stages/types.ts';
import type { ShardState } from '../core/shard.ts';
import type { StagingStore } from '../pipeline/staging/types.ts';
import type { StatsWriter } from '../telemetry/stats.ts';
import { nextStage, type ShardJobData, type StageQueues } from './queues.ts';

/**
 * The BullMQ processor of one stage. The job carries {runId, shardId}; the processor loads
 * the run's config and the shard's state, runs the stage logic unless the state says the stage
 * already ran (a retried or re-fed job), saves the state, and enqueues the next stage. The write
 * step records the shard once in the run's totals (idempotent) and deletes its staging.
 *
 * Errors: shard-level failures are retried with backoff; a CapfiltError whose code is
 * `permanent` in the catalogue (src/core/errors.ts) fails at once (an UnrecoverableError that
 * carries it as its cause, so the code survives without parsing messages). A job that fails for good is settled by
 * `settleFailedJob`: its shard still goes to write, with its pending rows failed (STAGE_FAILED),
 * so every row is accounted. On shutdown the job is moved back to wait, not failed.
 *
 * Leftover jobs: a job added by an earlier attempt of the run (a coordinator killed or hung,
 * Redis restarted) can meet a shard that moved on without it. Its shard already written (in
 * the run's done set, or its parquet on disk) → recorded and skipped. Its shard without state
 * and without output → the job waits (delayed, no attempt used): the run re-feeds every shard
 * that has no output, and the job then either runs as part of that chain (the chain's add of
 * the same job id lands on it) or finds the shard written. A job of any attempt whose shard
 * has not finished the previous stage waits the same way instead of running on rows that are
 * not ready. Only a job of the current attempt whose state is missing fails
 * (STAGING_STATE_MISSING): that is a staging store the workers do not share.
 */
export type StageFn = (state: ShardState, ctx: StageContext) => Promise<void>;

export interface ProcessorDeps {
  queues: StageQueues;
  log: Logger;
  run(runId: string): Promise<{ state: RunState; config: CapfiltConfig; staging: StagingStore } | null>;
  /** The stage bound for the run (src/workers/stages.ts: the stage table's entry, its config sections and model). */
  stage(stage: string, config: CapfiltConfig): Promise<StageFn>;
  stats: StatsWriter | null;
}

/** A job failure BullMQ must not retry, carrying the coded error it stands for as its cause. */
export function permanentFailure(e: CapfiltError): UnrecoverableError {
  const u = new UnrecoverableError(e.message);
  (u as { cause?: unknown }).cause = e;
  return u;
}

function failPending(state: ShardState, failure: NonNullable<ShardJobData['failure']>): void {
  for (const r of state.records) {
    if (r.status !== 'pending') continue;
    r.status = 'failed';
    r.reason = 'STAGE_FAILED';
    r.reasonDetail = `${failure.stage}: ${failure.code}: ${failure.message}`.slice(0, 500);
  }
}

function isShardJobData(d: unknown): d is ShardJobData {
  return typeof d === 'object' && d !== null && typeof (d as ShardJobData).runId === 'string' && typeof (d as ShardJobData).shardId === 'string';
}

/** The output a job names, when it names a usable one (job data is not trusted). */
function outputOf(data: ShardJobData): { name: string; rows: number } | null {
  const o = data.output;
  return o && typeof o.name === 'string' && /^\d{1,12}$/.test(o.name) && Number.isSafeInteger(o.rows) && o.rows > 0 ? o : null;
}

/** What a job hands on to the shard's next job: the shard's output and the chain's attempt. */
export function chainData(data: ShardJobData, state?: ShardState): Pick<ShardJobData, 'output' | 'attempt'> {
  const output = state ? { name: state.shard.outputName, rows: state.shard.rowCount } : outputOf(data) ?? undefined;
  return { ...(output ? { output } : {}), ...(typeof data.attempt === 'number' ? { attempt: data.attempt } : {}) };
}

/** How long a leftover job waits before it looks at its shard again. */
export const LEFTOVER_WAIT_MS = 2_000;

export function makeProcessor(stage: string, deps: ProcessorDeps) {
  return async (job: Job<ShardJobData>, token?: string, signal?: AbortSignal): Promise<{ shardId: string; skipped?: string }> => {
    // Job data comes from Redis, which anyone with access can write: check its shape before use.
    if (!isShardJobData(job.data)) throw new UnrecoverableError(`job ${job.id} data is not {runId, shardId} strings: ${JSON.stringify(job.data)?.slice(0, 200)}`);
    const { runId, shardId } = job.data;
    const log = deps.log.child({ stage, runId, shardId, attempt: job.attemptsMade + 1 });
    const run = await deps.run(runId);
    if (!run) throw new UnrecoverableError(`run ${runId} has no state in Redis (it was deleted); dropping job ${job.id}`);
    const { config, staging } = run;
    const waitForShard = async (why: string): Promise<never> => {
      log.debug({ why }, 'leftover job waits for its shard');
      await job.moveToDelayed(Date.now() + Math.max(LEFTOVER_WAIT_MS, config.pipeline.backoffMs), token);
      throw new DelayedError();
    };
    const state = await staging.getState(runId, shardId);
    if (!state) {
      // Every job of a chain carries its shard's output name (= its number): the done bitmap's offset.
      const output = outputOf(job.data);
      const ref = output ? { shardId, number: Number(output.name) } : null;
      if (ref && (await run.state.isDone(ref))) return { shardId, skipped: 'shard already written' };
      if (output && ref && config.output.dir) {
        // A job left over from an earlier attempt, for a shard that attempt wrote (and whose
        // staging it deleted): the parquet is the record, as for the feeder's resume rule.
        const written = await finishedShardCounts(openOutput(config.output.dir, config.s3).store, { outputName: output.name, rowCount: output.rows });
        if (written) {
          await run.state.markDone(ref, written);
          return { shardId, skipped: 'output already written' };
        }
      }
      if ((job.data.attempt ?? 0) < (await run.state.attempt())) return waitForShard('no staged state yet: the run re-feeds the shard');
      throw permanentFailure(new CapfiltError('STAGING_STATE_MISSING', `shard ${shardId} of run ${runId} has no state in the ${staging.kind} staging store (workers on several hosts need staging.backend=redis or s3, or a shared staging.dir)`));
    }
    // Stage names of the run's chain (a table with more stages than the built-in one included).
    const stages: readonly string[] = config.pipeline.stages;
    const previous = stages[stages.indexOf(stage) - 1];
    if (previous && !state.stagesDone.includes(stage) && !state.stagesDone.includes(previous) && !(stage === 'write' && job.data.failure)) {
      // The shard was fed again from scratch after this job was added: its own chain reaches
      // this stage later, and its add of this job id lands on this job.
      return waitForShard(`the shard has not finished ${previous} yet`);
    }
    const ctrl = new AbortController();
    // The download stage listens on the signal once per concurrent request.
    setMaxListeners(0, ctrl.signal);
    const onAbort = () => ctrl.abort(signal?.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      if (stage === 'write' && !state.stagesDone.includes('write') && config.output.dir) {
        // A writer killed after renaming the parquet into place (the last file) but before
        // deleting the staging leaves a complete shard: record it instead of writing it again.
        const written = await finishedShardCounts(openOutput(config.output.dir, config.s3).store, state.shard);
        if (written) {
          await run.state.markDone(state.shard, written);
          await staging.deleteShard(runId, shardId);
          return { shardId, skipped: 'output already written' };
        }
      }
      if (!state.stagesDone.includes(stage)) {
        if (stage === 'write') {
          if (job.data.failure) failPending(state, job.data.failure);
          finalizeRecords(state.records, config.filter.selection);
        }
        const fn = await deps.stage(stage, config);
        const t0 = performance.now();
        await fn(state, { config, staging, log, signal: ctrl.signal });
        state.timings[stage] = Math.round(performance.now() - t0);
        state.stagesDone.push(stage);
        if (stage !== 'write') await staging.putState(state);
        log.debug({ ms: state.timings[stage] }, 'stage done');
      }
      if (stage === 'write') {
        const counts = countStatuses(state.records);
        if (counts.kept + counts.filtered + counts.failed !== counts.rows) {
          throw new UnrecoverableError(`shard ${shardId}: ${counts.rows - counts.kept - counts.filtered - counts.failed} rows are still pending after write`);
        }
        if (deps.stats) {
          await deps.stats
            .recordRows(runId, 'write', state.records, { shardId, final: true, loadImage: (r) => (r.image ? staging.getBlob(r.image.ref).catch(() => null) : Promise.resolve(null)) })
            .catch((e: unknown) => log.warn({ err: describeError(e) }, 'stats update failed'));
        }
        await run.state.markDone(state.shard, counts);
        await staging.deleteShard(runId, shardId);
        return { shardId };
      }
      if (deps.stats) await deps.stats.recordRows(runId, stage, state.records, { shardId }).catch((e: unknown) => log.warn({ err: describeError(e) }, 'stats update failed'));
      const next = nextStage(stages, stage);
      if (next) await deps.queues.enqueue(next, { runId, shardId, ...chainData(job.data, state) }, config);
      return { shardId };
    } catch (e) {
      if (signal?.aborted) {
        // Shutting down: hand the job back untouched (no attempt used) for another worker.
        await job.moveToWait(token);
        throw new WaitingError();
      }
      if (e instanceof UnrecoverableError) throw e;
      if (isCapfiltError(e) && retryKindOf(e.code) === 'permanent') throw permanentFailure(e);
      throw e;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  };
}

/**
 * Called for a job that failed for good (attempts used up, unrecoverable, or stalled too often):
 * an earlier stage's shard is sent to write with its pending rows failed; a failed write is
 * recorded in the run's failed shards so that the run ends and reports it.
 */
export async function settleFailedJob(stage: string, job: Job<ShardJobData>, err: Error, deps: ProcessorDeps): Promise<void> {
  if (!isShardJobData(job.data)) return;
  const { runId, shardId } = job.data;
  const run = await deps.run(runId);
  if (!run) return;
  // A coded error, or one that carries it as its cause (permanentFailure); anything else is INTERNAL.
  const { code, text: message } = codeAndText(err);
  if (stage === 'write') {
    const output = outputOf(job.data);
    await run.state.markFailed({ shardId, number: output ? Number(output.name) : null }, `${code}: ${message}`);
    return;
  }
  await deps.queues.enqueue('write', { runId, shardId, failure: { stage, code, message }, ...chainData(job.data) }, run.config);
}
