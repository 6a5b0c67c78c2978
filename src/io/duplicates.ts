import type { Redis } from 'ioredis';

/**
 * Exact-duplicate detection within a run, by sha256 of the original bytes. `claim` records the
 * hash for `key` and returns the key that claimed it first, or null when `key` is first. A key
 * that claims its own hash again (a shard retried after a crash) is not its own duplicate.
 *
 * "First" is first to finish downloading, not first in input order: shards download in
 * parallel, on any number of hosts. Which copy is kept can differ between runs; that one copy
 * is kept never does.
 */
export interface DuplicateIndex {
  claim(sha256: string, key: string): Promise<string | null>;
}

export class MemoryDuplicateIndex implements DuplicateIndex {
  private readonly seen = new Map<string, string>();

  async claim(sha256: string, key: string): Promise<string | null> {
    const first = this.seen.get(sha256);
    if (first === undefined) {
      this.seen.set(sha256, key);
      return null;
    }
    return first === key ? null : first;
  }

  size(): number {
    return this.seen.size;
  }
}

/**
 * Shared by every worker of a run: one Redis string per hash, `SET prefix:hash key NX GET` (one
 * atomic round trip: sets when absent, returns the previous holder otherwise). Keys expire
 * after `ttlSeconds` so a finished run leaves nothing behind for long; 64 hex chars + a key is
 * about 150 bytes per image in Redis.
 */
export class RedisDuplicateIndex implements DuplicateIndex {
  constructor(
    private readonly redis: Redis,
    /** e.g. `${queuePrefix}:${runId}:dup`; one prefix per run. */
    private readonly prefix: string,
    private readonly ttlSeconds = 7 * 24 * 3600,
  ) {}

  async claim(sha256: string, key: string): Promise<string | null> {
    const prev = (await this.redis.call('SET', `${this.prefix}:${sha256}`, key, 'NX', 'GET', 'EX', String(this.ttlSeconds))) as string | null;
    return prev === null || prev === key ? null : prev;
  }

  /** Deletes the run's hashes (SCAN, not KEYS, so a big run does not block Redis). */
  async clear(): Promise<number> {
    let cursor = '0';
    let removed = 0;
    do {
      const [next, keys] = await this.redis.scan(cursor, 'MATCH', `${this.prefix}:*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length) removed += await this.redis.del(...keys);
    } while (cursor !== '0');
    return removed;
  }
}
