import type { Logger } from 'pino';
import type { CapfiltConfig } from '../../config/schema.ts';
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
export interface StageContext {
  config: CapfiltConfig;
  staging: StagingStore;
  log: Logger;
  /** Aborted when the worker is shutting down; long stages may stop early and throw. */
  signal: AbortSignal;
}
