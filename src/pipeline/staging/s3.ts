import { CapfiltError, isCapfiltError } from '../../core/errors.ts';
import type { ShardState } from '../../core/shard.ts';
import { S3ObjectStore } from '../../io/storage/object-store.ts';
import type { S3Options } from '../../io/storage/s3-client.ts';
import type { StagingStore } from './types.ts';

/**
 * S3 staging: <prefix>/<runId>/<shardId>/state.json and one object per staged image
 * (blob.<name>), so workers on hosts that share nothing but Redis and a bucket share staging.
 * Each staged image costs a PUT, a GET per later stage that reads it, and its share of one
 * list + DeleteObjects when the shard is written. Refs are "s3:<runId>/<shardId>/<name>",
 * relative to the store's prefix like the fs backend's, so they never carry a bucket a worker
 * did not configure.
 *
 * Failures keep the S3_* codes of src/io/storage (S3_UNAVAILABLE is transient, so the stage's
 * job is retried through an outage; a missing bucket or refused credentials fail at once).
 */
const SAFE = /^[A-Za-z0-9._-]+$/;

function checkName(kind: string, v: string): string {
  if (!SAFE.test(v) || v === '.' || v === '..') throw new CapfiltError('STAGING_BLOB_MISSING', `staging ${kind} "${v}" is not a safe object name`);
  return v;
}

const STATE = 'state.json';

export class S3StagingStore implements StagingStore {
  readonly kind = 's3' as const;
  private readonly store: S3ObjectStore;

  constructor(prefix: string, s3: S3Options) {
    this.store = new S3ObjectStore(prefix, s3);
  }

  /** s3://bucket/prefix/ of this store, for messages. */
  get location(): string {
    return this.store.location;
  }

  private shardPath(runId: string, shardId: string): string {
    return `${checkName('run id', runId)}/${checkName('shard id', shardId)}`;
  }

  /**
   * Writes and deletes a small object at the prefix, so a missing bucket (S3_NO_SUCH_BUCKET),
   * refused credentials (S3_ACCESS_DENIED) or an unreachable endpoint (S3_UNAVAILABLE) stops a
   * run before it plans, loads models or downloads anything.
   */
  async probe(): Promise<void> {
    const name = `.probe.${process.pid}.${Math.random().toString(36).slice(2)}`;
    await this.store.put(name, 'capfilt staging probe');
    await this.store.delete([name]);
  }

  async putState(state: ShardState): Promise<void> {
    // One PUT replaces the object whole: a killed worker leaves the old or the new state.
    await this.store.put(`${this.shardPath(state.shard.runId, state.shard.shardId)}/${STATE}`, JSON.stringify(state));
  }

  async getState(runId: string, shardId: string): Promise<ShardState | null> {
    try {
      return JSON.parse((await this.store.read(`${this.shardPath(runId, shardId)}/${STATE}`)).toString('utf8')) as ShardState;
    } catch (e) {
      if (isCapfiltError(e, 'S3_NO_SUCH_KEY')) return null;
      throw e;
    }
  }

  async putBlob(runId: string, shardId: string, name: string, bytes: Uint8Array): Promise<string> {
    await this.store.put(`${this.shardPath(runId, shardId)}/blob.${checkName('blob name', name)}`, bytes);
    return `s3:${runId}/${shardId}/${name}`;
  }

  async getBlob(ref: string): Promise<Uint8Array> {
    const m = /^s3:([^/]+)\/([^/]+)\/([^/]+)$/.exec(ref);
    if (!m) throw new CapfiltError('STAGING_BLOB_MISSING', `staging ref "${ref}" is not an S3 staging ref (is every worker using the same staging backend?)`, { ref });
    const name = `${this.shardPath(m[1], m[2])}/blob.${checkName('blob name', m[3])}`;
    try {
      const b = await this.store.read(name);
      return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
    } catch (e) {
      if (isCapfiltError(e, 'S3_NO_SUCH_KEY')) {
        throw new CapfiltError('STAGING_BLOB_MISSING', `staged image ${ref} is not at ${this.store.locate(name)} (shard already written, or workers use different staging.dir prefixes)`, { ref });
      }
      throw e;
    }
  }

  async deleteShard(runId: string, shardId: string): Promise<void> {
    const names = (await this.store.list(this.shardPath(runId, shardId))).map((o) => o.name);
    const state = `${this.shardPath(runId, shardId)}/${STATE}`;
    // Images first, state last: a delete cut short leaves the state, so the write job's retry
    // finds the shard (its parquet written) and deletes again instead of orphaning images.
    await this.store.delete(names.filter((n) => n !== state));
    await this.store.delete([state]);
  }

  async sizeBytes(runId: string): Promise<number> {
    let total = 0;
    for (const o of await this.store.list(checkName('run id', runId))) total += o.size;
    return total;
  }

  /** The S3 client is shared by the process (closeS3Clients in src/io/storage ends it). */
  async close(): Promise<void> {}
}
