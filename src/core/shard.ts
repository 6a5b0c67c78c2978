import type { RowRecord } from './records.ts';

/**
 * A shard — N consecutive rows of one input file — is the unit of work through every stage.
 * These types are shared by the planner, the staging stores, the stage logic and the queue
 * wiring, so they live on the ground floor.
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
