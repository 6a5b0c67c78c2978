import { randomUUID } from 'node:crypto';
import { hashTag, type RedisClient } from '../core/redis.ts';
import { CapfiltError } from '../core/errors.ts';
import type { CapfiltConfig } from '../config/schema.ts';

/**
 * A run's state in Redis. The queues carry only {runId, shardId}; everything a worker needs to
 * know about the run (its config) and everything `status`/the dashboard show live here.
 *
 * Keys (K = "<redis.prefix>:run:{<runId>}": the hash tag puts a run's keys in one cluster slot,
 * so the scripts and transactions below may touch several of them; `<prefix>:runs` is apart):
 *   <prefix>:runs       zset    runId → start time (ms), for `capfilt status`
 *   K:meta              hash    config (JSON), input, out, status, totalRows, totalShards,
 *                               skippedShards, startedAt, finishedAt, error
 *   K:lock              string  token of the `capfilt run` process driving the run (PX expiry)
 *   K:inflight          set     shards staged and not yet written (the backpressure bound)
 *   K:done              string  bitmap, bit <shard number> set once per written shard (SETBIT):
 *                               one bit a shard (1.25 MB at 10M shards), so the run's keys stay
 *                               flat in dataset size but for the duplicate index
 *   K:totals            hash    rows, kept, filtered, failed, shards (sums over the shards in K:done)
 *   K:failed            hash    shardId → error, shards whose write failed for good (never
 *                               also in K:done: a shard written after all leaves it)
 *   K:attempt           string  counter of `begin` calls: jobs carry the attempt that fed them,
 *                               so a job left over from an earlier attempt is known as such
 *   K:clip-top          hash    the run's CLIP-score histogram for clip.topFraction
 *                               (src/pipeline/top-fraction.ts; one key, so cluster-safe)
 */
export interface ShardCounts {
  rows: number;
  kept: number;
  filtered: number;
  failed: number;
}

export type RunStatus = 'planning' | 'running' | 'done' | 'failed' | 'interrupted';

export interface RunMeta {
  runId: string;
  status: RunStatus;
  input: string;
  out: string;
  stages: string[];
  totalRows: number;
  totalShards: number;
  skippedShards: number;
  startedAt: number;
  finishedAt: number | null;
  error: string | null;
}

export interface RunTotals extends ShardCounts {
  shards: number;
}

/** A shard as the run's records name it: its id (in-flight set, failures) and number (done bitmap). */
export interface ShardRef {
  shardId: string;
  number: number;
}

const MARK_DONE = `
-- KEYS: 1 done, 2 totals, 3 inflight, 4 failed
-- ARGV: 1 shardId, 2 shard number, 3 rows, 4 kept, 5 filtered, 6 failed
-- Output: 1 when recorded now, 0 when the shard was already recorded (a retried write).
redis.call('SREM', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
if redis.call('SETBIT', KEYS[1], ARGV[2], 1) == 1 then return 0 end
redis.call('HINCRBY', KEYS[2], 'rows', ARGV[3])
redis.call('HINCRBY', KEYS[2], 'kept', ARGV[4])
redis.call('HINCRBY', KEYS[2], 'filtered', ARGV[5])
redis.call('HINCRBY', KEYS[2], 'failed', ARGV[6])
redis.call('HINCRBY', KEYS[2], 'shards', 1)
return 1`;

const MARK_FAILED = `
-- KEYS: 1 failed, 2 done, 3 inflight; ARGV: 1 shardId, 2 error, 3 shard number
-- A shard that was written after all (a leftover job failing after the shard's own chain
-- wrote it) is not failed: counting it twice would end the run before its last shards.
redis.call('SREM', KEYS[3], ARGV[1])
if tonumber(ARGV[3]) >= 0 and redis.call('GETBIT', KEYS[2], ARGV[3]) == 1 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1`;

const RELEASE_LOCK = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

// A lock that expired while Redis was away (a restart longer than the lock's life) is taken
// back, unless another process took it meanwhile.
const REFRESH_LOCK = `
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0`;

export class RunState {
  readonly key: string;

  constructor(
    readonly redis: RedisClient,
    readonly prefix: string,
    readonly runId: string,
  ) {
    this.key = `${prefix}:run:${hashTag(runId)}`;
  }

  /**
   * Takes the run's lock for this process; throws RUN_ACTIVE while another live `capfilt run`
   * holds it. The lock expires on its own when its holder dies (kill -9), so a rerun after a
   * crash proceeds once `ttlMs` has passed.
   */
  async acquire(ttlMs = 15_000): Promise<() => Promise<void>> {
    const token = randomUUID();
    const ok = await this.redis.set(`${this.key}:lock`, token, 'PX', ttlMs, 'NX');
    if (ok !== 'OK') {
      const ttl = await this.redis.pttl(`${this.key}:lock`);
      throw new CapfiltError('RUN_ACTIVE', `run ${this.runId} is being driven by another capfilt run process (its lock expires in ${Math.max(0, Math.round(ttl / 1000))} s if that process is gone); use capfilt worker to add workers to it`, { runId: this.runId });
    }
    const timer = setInterval(() => {
      this.redis.eval(REFRESH_LOCK, 1, `${this.key}:lock`, token, ttlMs).catch(() => undefined);
    }, Math.max(1000, Math.floor(ttlMs / 3)));
    timer.unref();
    return async () => {
      clearInterval(timer);
      await this.redis.eval(RELEASE_LOCK, 1, `${this.key}:lock`, token);
    };
  }

  /**
   * Starts (or restarts) the run: fresh counters, config published for the workers. Returns
   * the attempt number (1 for the first `begin` of this run id).
   */
  async begin(config: CapfiltConfig, meta: Omit<RunMeta, 'status' | 'finishedAt' | 'error' | 'runId'>): Promise<number> {
    const r = await this.redis
      .multi()
      .incr(`${this.key}:attempt`)
      .del(`${this.key}:inflight`, `${this.key}:done`, `${this.key}:totals`, `${this.key}:failed`, `${this.key}:meta`)
      .hset(`${this.key}:meta`, {
        runId: this.runId,
        config: JSON.stringify(config),
        status: 'planning',
        input: meta.input,
        out: meta.out,
        stages: JSON.stringify(meta.stages),
        totalRows: meta.totalRows,
        totalShards: meta.totalShards,
        skippedShards: meta.skippedShards,
        startedAt: meta.startedAt,
      })
      .exec();
    // Another slot than the run's keys: a command of its own (a MULTI may not span slots).
    await this.redis.zadd(`${this.prefix}:runs`, meta.startedAt, this.runId);
    return Number(r?.[0]?.[1] ?? 0);
  }

  /** Corrects the totals after the run's final top-fraction pass moved rows between kept and filtered. */
  async adjustTotals(delta: { kept: number; filtered: number }): Promise<void> {
    await this.redis.multi().hincrby(`${this.key}:totals`, 'kept', delta.kept).hincrby(`${this.key}:totals`, 'filtered', delta.filtered).exec();
  }

  /** The current attempt (see `begin`), 0 before the first. */
  async attempt(): Promise<number> {
    return Number((await this.redis.get(`${this.key}:attempt`)) ?? 0);
  }

  async update(fields: Partial<Pick<RunMeta, 'status' | 'totalRows' | 'totalShards' | 'skippedShards' | 'finishedAt' | 'error'>>): Promise<void> {
    const flat: Record<string, string | number> = {};
    for (const [k, v] of Object.entries(fields)) if (v !== undefined) flat[k] = v === null ? '' : (v as string | number);
    if (Object.keys(flat).length) await this.redis.hset(`${this.key}:meta`, flat);
  }

  async config(): Promise<CapfiltConfig | null> {
    const c = await this.redis.hget(`${this.key}:meta`, 'config');
    return c ? (JSON.parse(c) as CapfiltConfig) : null;
  }

  async meta(): Promise<RunMeta | null> {
    const h = await this.redis.hgetall(`${this.key}:meta`);
    if (!h.runId) return null;
    return {
      runId: h.runId,
      status: h.status as RunStatus,
      input: h.input,
      out: h.out,
      stages: JSON.parse(h.stages ?? '[]'),
      totalRows: Number(h.totalRows ?? 0),
      totalShards: Number(h.totalShards ?? 0),
      skippedShards: Number(h.skippedShards ?? 0),
      startedAt: Number(h.startedAt ?? 0),
      finishedAt: h.finishedAt ? Number(h.finishedAt) : null,
      error: h.error || null,
    };
  }

  async addInFlight(shardId: string): Promise<void> {
    await this.redis.sadd(`${this.key}:inflight`, shardId);
  }

  async inFlight(): Promise<number> {
    return this.redis.scard(`${this.key}:inflight`);
  }

  /** Records a written shard once; a retried write returns false and changes nothing. */
  async markDone(shard: ShardRef, counts: ShardCounts): Promise<boolean> {
    const r = await this.redis.eval(MARK_DONE, 4, `${this.key}:done`, `${this.key}:totals`, `${this.key}:inflight`, `${this.key}:failed`, shard.shardId, checkedNumber(shard), counts.rows, counts.kept, counts.filtered, counts.failed);
    return r === 1;
  }

  /**
   * Records a shard whose write failed for good; false (nothing recorded) when it is written.
   * A job that does not carry its shard's number (one fed by an older capfilt) is recorded
   * without that check rather than left unaccounted, which would keep the run from ending.
   */
  async markFailed(shard: { shardId: string; number: number | null }, error: string): Promise<boolean> {
    const number = shard.number === null ? -1 : checkedNumber({ number: shard.number });
    return (await this.redis.eval(MARK_FAILED, 3, `${this.key}:failed`, `${this.key}:done`, `${this.key}:inflight`, shard.shardId, error, number)) === 1;
  }

  async isDone(shard: Pick<ShardRef, 'number'>): Promise<boolean> {
    return (await this.redis.getbit(`${this.key}:done`, checkedNumber(shard))) === 1;
  }

  async failedShards(): Promise<Record<string, string>> {
    return this.redis.hgetall(`${this.key}:failed`);
  }

  async totals(): Promise<RunTotals> {
    const h = await this.redis.hgetall(`${this.key}:totals`);
    return { rows: Number(h.rows ?? 0), kept: Number(h.kept ?? 0), filtered: Number(h.filtered ?? 0), failed: Number(h.failed ?? 0), shards: Number(h.shards ?? 0) };
  }

  /** Shards recorded as written (the bits set in K:done). */
  async doneShards(): Promise<number> {
    return this.redis.bitcount(`${this.key}:done`);
  }
}

/** A shard number as a bitmap offset: a whole number Redis accepts (below 2^32). */
function checkedNumber(shard: Pick<ShardRef, 'number'>): number {
  if (!Number.isSafeInteger(shard.number) || shard.number < 0 || shard.number >= 2 ** 32) throw new CapfiltError('INTERNAL', `shard number ${shard.number} is not a whole number in [0, 2^32)`);
  return shard.number;
}

export async function listRuns(redis: RedisClient, prefix: string, limit = 20): Promise<string[]> {
  return redis.zrevrange(`${prefix}:runs`, 0, limit - 1);
}
