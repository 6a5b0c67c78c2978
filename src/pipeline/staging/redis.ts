import { hashTag, type RedisClient } from '../../core/redis.ts';
import { CapfiltError } from '../../core/errors.ts';
import type { ShardState } from '../../core/shard.ts';
import type { StagingStore } from './types.ts';

/**
 * Redis staging: the shard state and its images live in the run's Redis, so workers on any host
 * that reaches Redis share them with no shared filesystem and no extra service. Memory is
 * bounded by the pipeline's in-flight limit (maxInFlightShards × rows per shard × staged image
 * size, e.g. 4 × 1000 × ~30 KB ≈ 120 MB at 384 px JPEG) and released when a shard is written.
 *
 * Keys (prefix = "<redis.prefix>:stage:{<runId>}"; the hash tag keeps a run's staging in one
 * cluster slot, so the scripts below may touch the shard's keys and the run's counter at once):
 *   <prefix>:<shardId>:state  string  JSON ShardState
 *   <prefix>:<shardId>:blobs  hash    blob name → bytes
 *   <prefix>:bytes            string  bytes held by the run (kept exact by the Lua scripts below)
 *   <prefix>:<shardId>:bytes  string  bytes held by the shard
 */
const PUT = `
-- KEYS: 1 target (string or hash), 2 shard bytes, 3 run bytes
-- ARGV: 1 field ('' for a string key), 2 value
local old
if ARGV[1] == '' then
  old = redis.call('STRLEN', KEYS[1])
  redis.call('SET', KEYS[1], ARGV[2])
else
  old = redis.call('HSTRLEN', KEYS[1], ARGV[1])
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
local delta = string.len(ARGV[2]) - old
redis.call('INCRBY', KEYS[2], delta)
redis.call('INCRBY', KEYS[3], delta)
return delta`;

const DELETE = `
-- KEYS: 1 state, 2 blobs, 3 shard bytes, 4 run bytes
local held = tonumber(redis.call('GET', KEYS[3]) or '0')
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
if held ~= 0 and redis.call('DECRBY', KEYS[4], held) <= 0 then redis.call('DEL', KEYS[4]) end
return held`;

export class RedisStagingStore implements StagingStore {
  readonly kind = 'redis' as const;

  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
  ) {}

  private k(runId: string, rest: string): string {
    return `${this.prefix}:stage:${hashTag(runId)}:${rest}`;
  }

  async putState(state: ShardState): Promise<void> {
    const { runId, shardId } = state.shard;
    await this.redis.eval(PUT, 3, this.k(runId, `${shardId}:state`), this.k(runId, `${shardId}:bytes`), this.k(runId, 'bytes'), '', JSON.stringify(state));
  }

  async getState(runId: string, shardId: string): Promise<ShardState | null> {
    const s = await this.redis.get(this.k(runId, `${shardId}:state`));
    return s === null ? null : (JSON.parse(s) as ShardState);
  }

  async putBlob(runId: string, shardId: string, name: string, bytes: Uint8Array): Promise<string> {
    await this.redis.eval(PUT, 3, this.k(runId, `${shardId}:blobs`), this.k(runId, `${shardId}:bytes`), this.k(runId, 'bytes'), name, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    return `redis:${runId}/${shardId}/${name}`;
  }

  async getBlob(ref: string): Promise<Uint8Array> {
    const m = /^redis:([^/]+)\/([^/]+)\/(.+)$/.exec(ref);
    if (!m) throw new CapfiltError('STAGING_BLOB_MISSING', `staging ref "${ref}" is not a Redis staging ref (is every worker using the same staging backend?)`, { ref });
    const b = await this.redis.hgetBuffer(this.k(m[1], `${m[2]}:blobs`), m[3]);
    if (b === null) throw new CapfiltError('STAGING_BLOB_MISSING', `staged image ${ref} is not in Redis (shard already written or staging was flushed)`, { ref });
    return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  }

  async deleteShard(runId: string, shardId: string): Promise<void> {
    await this.redis.eval(DELETE, 4, this.k(runId, `${shardId}:state`), this.k(runId, `${shardId}:blobs`), this.k(runId, `${shardId}:bytes`), this.k(runId, 'bytes'));
  }

  async sizeBytes(runId: string): Promise<number> {
    return Number((await this.redis.get(this.k(runId, 'bytes'))) ?? 0);
  }

  /** The connection belongs to the caller. */
  async close(): Promise<void> {}
}
