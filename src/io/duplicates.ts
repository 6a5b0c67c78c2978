import type { RedisClient } from '../core/redis.ts';

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

/** Bytes of the sha256 kept in a record (after the bytes that chose the bucket). */
export const FINGERPRINT_BYTES = 6;
/** Record: fingerprint, key length (1 byte), key as a 40-bit integer (5 bytes). */
export const RECORD_BYTES = FINGERPRINT_BYTES + 6;
/** Row keys are digit strings (src/pipeline/shards.ts rowKey); 12 digits fit 40 bits. */
const MAX_KEY_DIGITS = 12;
/** Fewest records a bucket holds on average once the run has claimed the rows it was sized for. */
export const TARGET_BUCKET_RECORDS = 128;
const MIN_BUCKETS = 1 << 6;
const MAX_BUCKETS = 1 << 26;

/**
 * Buckets for `rows` images: the power of two that gives 128–256 records a bucket (1.5–3 KB strings).
 * Fewer, larger buckets waste less on per-key overhead but make every claim copy more bytes;
 * at 128 records the key overhead is ~1 byte per record.
 */
export function bucketsFor(rows: number): number {
  const want = Math.max(1, rows / TARGET_BUCKET_RECORDS);
  return Math.min(MAX_BUCKETS, Math.max(MIN_BUCKETS, 2 ** Math.floor(Math.log2(want))));
}

/**
 * Fingerprint bits that decide "same image": the bucket's bits plus the stored 48. Two different
 * images share a fingerprint with probability 2^-bits per pair, so a run of n images expects
 * n² / 2^(bits + 1) false duplicates (n = 10⁹ at 2^22 buckets: ≈ 4·10⁻⁴).
 */
export function fingerprintBits(buckets: number): number {
  return Math.log2(buckets) + FINGERPRINT_BYTES * 8;
}

export function expectedFalseDuplicates(rows: number, buckets: number): number {
  return (rows * rows) / 2 ** (fingerprintBits(buckets) + 1);
}

function encodeKey(key: string): Buffer {
  if (!/^\d+$/.test(key) || key.length > MAX_KEY_DIGITS) {
    throw new Error(`duplicate index: row key ${JSON.stringify(key)} is not a row key of up to ${MAX_KEY_DIGITS} digits`);
  }
  const b = Buffer.alloc(6);
  b[0] = key.length;
  b.writeUIntBE(Number(key), 1, 5);
  return b;
}

function decodeKey(length: number, value: number): string {
  return String(value).padStart(length, '0');
}

/**
 * KEYS: 1 bucket. ARGV: 1 fingerprint, 2 encoded key (length byte + 40-bit integer), 3 ttl s.
 * Returns nil when the fingerprint is new (now recorded), else {length, integer} of the key that
 * recorded it. Records are scanned in place (string.find, then a check that the hit starts on
 * a record boundary); the bucket is rewritten whole with SET because APPEND and SETRANGE grow
 * strings greedily (up to 2× the bytes), which would undo the packing.
 */
const CLAIM = `
local s = redis.call('GET', KEYS[1])
local fp = ARGV[1]
local n = ${RECORD_BYTES}
if s then
  local i = 1
  while true do
    local j = string.find(s, fp, i, true)
    if not j then break end
    if (j - 1) % n == 0 then
      local b1, b2, b3, b4, b5, b6 = string.byte(s, j + ${FINGERPRINT_BYTES}, j + ${FINGERPRINT_BYTES + 5})
      return { b1, (((b2 * 256 + b3) * 256 + b4) * 256 + b5) * 256 + b6 }
    end
    i = j + 1
  end
else
  s = ''
end
redis.call('SET', KEYS[1], s .. fp .. ARGV[2], 'EX', ARGV[3])
return nil`;

type ClaimCommand = (bucket: string, fingerprint: Buffer, key: Buffer, ttl: number) => Promise<[number, number] | null>;

export interface RedisDuplicateIndexOptions {
  /** Images the run expects (sizes the buckets the first time the run's index is used). */
  expectedRows?: () => Promise<number>;
  ttlSeconds?: number;
}

/**
 * Shared by every worker of a run, at ~13 bytes of Redis memory per image (bench/dup-index.ts
 * measures it). The sha256's first four bytes pick one of B buckets (a power of two fixed per
 * run, stored at `prefix:params` by whoever uses the index first); each bucket is one Redis
 * string of 12-byte records: the next 6 bytes of the hash, then the key that claimed it. One
 * single-key Lua call per claim, so it is atomic and cluster-safe (bucket keys spread over all
 * slots). Keys expire after `ttlSeconds` so a finished run leaves nothing behind for long.
 * What a record cannot hold is the full hash: see `expectedFalseDuplicates`.
 */
export class RedisDuplicateIndex implements DuplicateIndex {
  private buckets: Promise<number> | null = null;
  private readonly ttlSeconds: number;

  constructor(
    private readonly redis: RedisClient,
    /** e.g. `${queuePrefix}:run:${runId}:dup`; one prefix per run. */
    private readonly prefix: string,
    private readonly o: RedisDuplicateIndexOptions = {},
  ) {
    this.ttlSeconds = o.ttlSeconds ?? 7 * 24 * 3600;
    if (!('capfiltDupClaim' in redis)) redis.defineCommand('capfiltDupClaim', { numberOfKeys: 1, lua: CLAIM });
  }

  /** The run's bucket count: the stored one, else sized now from the expected rows (first writer wins). */
  bucketCount(): Promise<number> {
    this.buckets ??= (async () => {
      const key = `${this.prefix}:params`;
      const stored = await this.redis.get(key);
      if (stored !== null) return Number(stored);
      const proposed = bucketsFor((await this.o.expectedRows?.()) ?? 0);
      await this.redis.set(key, String(proposed), 'EX', this.ttlSeconds, 'NX');
      return Number(await this.redis.get(key));
    })();
    this.buckets.catch(() => {
      this.buckets = null;
    });
    return this.buckets;
  }

  async claim(sha256: string, key: string): Promise<string | null> {
    if (!/^[0-9a-f]{64}$/.test(sha256)) throw new Error(`duplicate index: ${JSON.stringify(sha256)} is not a hex sha256`);
    const hash = Buffer.from(sha256, 'hex');
    const bucket = hash.readUInt32BE(0) & ((await this.bucketCount()) - 1);
    const claim = (this.redis as unknown as { capfiltDupClaim: ClaimCommand }).capfiltDupClaim;
    const prev = await claim.call(this.redis, `${this.prefix}:${bucket}`, hash.subarray(4, 4 + FINGERPRINT_BYTES), encodeKey(key), this.ttlSeconds);
    if (prev === null) return null;
    const first = decodeKey(Number(prev[0]), Number(prev[1]));
    return first === key ? null : first;
  }

  /** Deletes the run's buckets and parameters (by bucket number, no SCAN: also right on a cluster). */
  async clear(): Promise<number> {
    const stored = await this.redis.get(`${this.prefix}:params`);
    if (stored === null) return 0;
    const keys = Array.from({ length: Number(stored) }, (_, i) => `${this.prefix}:${i}`);
    let removed = 0;
    for (let i = 0; i < keys.length; i += 512) {
      const counts = await Promise.all(keys.slice(i, i + 512).map((k) => this.redis.del(k)));
      removed += counts.reduce((a, b) => a + b, 0);
    }
    await this.redis.del(`${this.prefix}:params`);
    this.buckets = null;
    return removed;
  }
}
