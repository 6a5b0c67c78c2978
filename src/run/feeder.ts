import type { Logger } from 'pino';
import type { CapfiltConfig } from '../config/schema.ts';
import { CapfiltError } from '../core/errors.ts';
import type { InputRow } from '../io/readers/types.ts';
import type { StageQueues } from '../workers/queues.ts';
import type { RowRecord } from '../core/records.ts';
import type { RunState, ShardCounts } from '../pipeline/run-state.ts';
import { rowKey } from '../pipeline/shards.ts';
import type { ShardInfo, ShardState } from '../core/shard.ts';
import type { StagingStore } from '../pipeline/staging/types.ts';

/**
 * Feeds planned shards into the first stage queue, at most `pipeline.maxInFlightShards` at a
 * time (a shard stays in flight until its output is written), so that staging space and Redis
 * memory stay flat whatever the input size. Rows are streamed from the input once; shards whose
 * output already exists are skipped (resume) and their counts read back from the output.
 *
 * A shard left staged by an interrupted earlier attempt is not staged again: its chain is
 * resumed from the first stage it has not finished (job ids dedupe against jobs still queued).
 * A shard with neither output nor staging is fed from scratch, whatever jobs an earlier
 * attempt left for it (those wait for the new chain, see src/workers/processor.ts).
 *
 * Redis may restart while feeding: each shard's feeding is idempotent (markDone and
 * addInFlight are sets, state is overwritten whole, job ids dedupe), so `guard` may run it
 * again after a connection error.
 */
export interface FeedDeps {
  config: CapfiltConfig;
  run: RunState;
  staging: StagingStore;
  queues: StageQueues;
  log: Logger;
  signal: AbortSignal;
  /** Rows of one input file, in order. */
  rows(file: string): AsyncIterable<InputRow>;
  /** Counts of a shard whose output exists, or null when it must be processed. */
  finished(shard: ShardInfo): Promise<ShardCounts | null>;
  onShard?(shard: ShardInfo, event: 'fed' | 'skipped' | 'resumed'): void;
  /** The run attempt (RunState.begin), stamped on every job so later attempts know leftovers. */
  attempt?: number;
  /** Runs one shard's feeding, retrying it while Redis is unreachable (RedisOutage.run). */
  guard?<T>(what: string, fn: () => Promise<T>): Promise<T>;
}

export function recordOf(row: InputRow, shard: ShardInfo, position: number, rowsPerShard: number): RowRecord {
  return {
    key: rowKey(shard.number, position, rowsPerShard),
    rowIndex: row.rowIndex,
    url: row.url,
    text: row.text,
    extra: row.extra,
    trusted: row.trusted,
    status: row.invalid ? 'failed' : 'pending',
    reason: row.invalid?.code ?? null,
    reasonDetail: row.invalid?.detail ?? null,
    image: null,
    captions: [],
    scores: [],
    selected: null,
    fetch: null,
  };
}

async function waitForRoom(d: FeedDeps): Promise<void> {
  while ((await d.run.inFlight()) >= d.config.pipeline.maxInFlightShards) {
    d.signal.throwIfAborted();
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function feedShard(d: FeedDeps, shard: ShardInfo, rows: InputRow[]): Promise<void> {
  const counts = await d.finished(shard);
  if (counts) {
    await d.run.markDone(shard, counts);
    d.onShard?.(shard, 'skipped');
    return;
  }
  await waitForRoom(d);
  const stages = d.config.pipeline.stages;
  const previous = await d.staging.getState(shard.runId, shard.shardId);
  await d.run.addInFlight(shard.shardId);
  const job = {
    runId: shard.runId, shardId: shard.shardId,
    output: { name: shard.outputName, rows: shard.rowCount },
    ...(d.attempt !== undefined ? { attempt: d.attempt } : {}),
  };
  if (previous && previous.records.length === rows.length) {
    const next = stages.find((s) => !previous.stagesDone.includes(s)) ?? 'write';
    await d.queues.enqueue(next, job, d.config);
    d.onShard?.(shard, 'resumed');
    return;
  }
  const state: ShardState = {
    shard,
    records: rows.map((r, i) => recordOf(r, shard, i, d.config.shards.rows)),
    stagesDone: [],
    timings: {},
  };
  await d.staging.putState(state);
  await d.queues.enqueue(stages[0], job, d.config);
  d.onShard?.(shard, 'fed');
}

/** Streams every planned shard's rows into the pipeline; returns when all are fed or skipped. */
export async function feed(d: FeedDeps, shards: ShardInfo[]): Promise<void> {
  const byFile = new Map<string, ShardInfo[]>();
  for (const s of shards) byFile.set(s.inputFile, [...(byFile.get(s.inputFile) ?? []), s]);
  for (const [file, fileShards] of byFile) {
    let i = 0;
    let batch: InputRow[] = [];
    for await (const row of d.rows(file)) {
      d.signal.throwIfAborted();
      batch.push(row);
      if (batch.length === fileShards[i].rowCount) {
        const shard = fileShards[i];
        const rows = batch;
        await (d.guard ? d.guard(`feeding shard ${shard.shardId}`, () => feedShard(d, shard, rows)) : feedShard(d, shard, rows));
        batch = [];
        i++;
        if (i === fileShards.length) break;
      }
    }
    if (i < fileShards.length) {
      throw new CapfiltError('INPUT_UNREADABLE', `input ${file} ended after ${fileShards[i].rowStart + batch.length} rows, but planning counted ${fileShards.reduce((n, s) => n + s.rowCount, 0)} (was it changed during the run?)`);
    }
  }
}
