import type { Logger } from 'pino';
import type { CapfiltConfig } from '../../config/schema.ts';
import type { RowRecord } from '../records.ts';
import type { StagingStore } from '../staging/types.ts';

/**
 * The contract between the queue wiring (src/workers) and the stage logic (src/pipeline/stages).
 * A stage function receives the whole shard (its records, loaded from the staging store by the
 * worker), mutates the records in place and returns. It knows nothing about BullMQ: the worker
 * loads the state, calls the stage, saves the state and enqueues the next stage.
 *
 * Errors: a stage throws only for shard-level problems (the worker retries those with backoff;
 * a `CapfiltError` whose code is in `PERMANENT_CODES` of src/workers/errors.ts is not retried).
 * Row-level problems never throw: the stage sets `status: 'failed'` and a `reason` code on the row.
 */
export type StageName = 'download' | 'caption' | 'filter' | 'write';
export const STAGE_ORDER: readonly StageName[] = ['download', 'caption', 'filter', 'write'];

/** Where a shard comes from and where it goes; derived deterministically by the planner. */
export interface ShardInfo {
  runId: string;
  /** Stable id from (input file, shard index in that file), e.g. "a1b2c3d4-00003". */
  shardId: string;
  /** Global shard number across the run's sorted input files; names the output files. */
  number: number;
  /** Output base name: `number` zero-padded to 5 digits ("00042" → 00042.tar/.parquet/_stats.json). */
  outputName: string;
  /** Input file path as given (resolved). */
  inputFile: string;
  /** Index of this shard within its input file. */
  indexInFile: number;
  /** First input row (0-based, within the file) and number of rows. */
  rowStart: number;
  rowCount: number;
}

/** What the staging store keeps for a shard between stages. */
export interface ShardState {
  shard: ShardInfo;
  records: RowRecord[];
  /** Stages that have finished on this shard (a retried job skips a finished stage). */
  stagesDone: StageName[];
  /** Wall time spent per stage, milliseconds (for stats.json and the dashboard). */
  timings: Partial<Record<StageName, number>>;
}

export interface StageContext {
  config: CapfiltConfig;
  staging: StagingStore;
  log: Logger;
  /** Aborted when the worker is shutting down; long stages may stop early and throw. */
  signal: AbortSignal;
}
