import type { Logger } from 'pino';
import type { CapfiltConfig } from '../../config/schema.ts';
import type { DuplicateIndex } from '../../io/duplicates.ts';
import type { OutputColumn } from '../../io/writers/columns.ts';
import type { StagingStore } from '../staging/types.ts';
import type { TopFractionSketch } from '../top-fraction.ts';

/**
 * The contract between the queue wiring (src/workers) and the stage logic (src/pipeline/stages).
 * A stage function receives the whole shard (its records, loaded from the staging store by the
 * worker), mutates the records in place and returns. It knows nothing about BullMQ: the worker
 * loads the state, calls the stage, saves the state and enqueues the next stage.
 *
 * Each stage receives only the config sections its table entry names (`StageRunContext<S>`),
 * and the model of its role, if it has one (src/pipeline/stages/table.ts).
 *
 * Errors: a stage throws only for shard-level problems. The worker retries those with backoff,
 * unless the error's code is `permanent` in the catalogue (src/core/errors.ts): then the job
 * fails at once. Row-level problems never throw: the stage sets `status: 'failed'` and a
 * `reason` code on the row.
 */
export type ConfigSection = keyof CapfiltConfig;

/** What the worker hands the stage binding for one job: the run's whole config and its services. */
export interface StageContext {
  config: CapfiltConfig;
  staging: StagingStore;
  log: Logger;
  /** Aborted when the worker is shutting down; long stages may stop early and throw. */
  signal: AbortSignal;
}

/** What a stage function receives: the config sections it declared, and the run's services. */
export interface StageRunContext<S extends ConfigSection = never> {
  config: Pick<CapfiltConfig, S>;
  staging: StagingStore;
  log: Logger;
  signal: AbortSignal;
  /** The run's exact-duplicate index, shared by every worker of the run (download stage). */
  duplicateIndex?: DuplicateIndex | null;
  /** The run's CLIP-score histogram for clip.topFraction, shared by every worker of the run (clip stage). */
  topFractionSketch?: TopFractionSketch | null;
  /** The parquet's stage columns, from the table the chain runs (write stage). */
  columns?: readonly OutputColumn[];
}
