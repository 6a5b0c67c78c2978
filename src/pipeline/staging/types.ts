/**
 * Staging store: where shard state and staged images live between stages. Three backends:
 * `fs` (a directory; the default, fastest on one host or with a shared filesystem), `redis`
 * (the run's Redis; lets workers on different hosts share staging without a shared filesystem,
 * its size bounded by `pipeline.maxInFlightShards`) and `s3` (a bucket prefix; hosts share
 * nothing but Redis and the bucket, and staging is not held in Redis' memory). All implement
 * this interface.
 *
 * Keys are scoped by run and shard so that one `deleteShard` removes everything of a shard once
 * it is written. Blob refs are opaque strings returned by `putBlob` and stored in
 * `RowRecord.image.ref`.
 */
import type { ShardState } from '../../core/shard.ts';

export interface StagingStore {
  readonly kind: 'fs' | 'redis' | 's3';
  putState(state: ShardState): Promise<void>;
  /** null when the shard has no staged state (never staged, or already written and deleted). */
  getState(runId: string, shardId: string): Promise<ShardState | null>;
  /** Stores an image of a row; returns its ref. Same (run, shard, name) overwrites. */
  putBlob(runId: string, shardId: string, name: string, bytes: Uint8Array): Promise<string>;
  /** Throws STAGING_BLOB_MISSING when the ref is unknown. */
  getBlob(ref: string): Promise<Uint8Array>;
  /** Removes the state and every blob of the shard. Idempotent. */
  deleteShard(runId: string, shardId: string): Promise<void>;
  /** Bytes currently held for a run (state + blobs), for the benchmark and the dashboard. */
  sizeBytes(runId: string): Promise<number>;
  close(): Promise<void>;
}
