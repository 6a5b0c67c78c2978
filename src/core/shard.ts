import type { RowRecord } from './records.ts';

/**
 * A shard — N consecutive rows of one input file — is the unit of work through every stage.
 * These types are shared by the planner, the staging stores, the stage logic and the queue
 * wiring, so they live on the ground floor.
 */

/**
 * The names of the pipeline's stages, in data-path order. Everything else about a stage (its
 * config slices, model role, scores, output columns, implementation) is in its entry of the
 * stage table, src/pipeline/stages/table.ts, whose type requires one entry per name here, in this
 * order. The names alone live on the ground floor because shard state, the config schema and the
 * stats layout name stages and sit below the pipeline.
 */
export const STAGE_ORDER = ['download', 'caption', 'filter', 'clip', 'write'] as const;
export type StageName = (typeof STAGE_ORDER)[number];

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
  /**
   * Stages that have finished on this shard (a retried job skips a finished stage). Names of the
   * chain's stage table: StageName for the built-in one, any name for a table with more stages.
   */
  stagesDone: string[];
  /** Wall time spent per stage, milliseconds (for stats.json and the dashboard). */
  timings: Partial<Record<string, number>>;
}
