import { createHash, randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { bucketsFor, expectedFalseDuplicates, fingerprintBits, MemoryDuplicateIndex, RECORD_BYTES, RedisDuplicateIndex } from '../../../src/io/duplicates.ts';
import { rowKey } from '../../../src/pipeline/shards.ts';

const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', { lazyConnect: true });
afterAll(() => redis.quit());

const sha = (s: string) => createHash('sha256').update(s).digest('hex');

describe.each([
  ['memory', () => new MemoryDuplicateIndex()],
  ['redis', () => new RedisDuplicateIndex(redis, `capfilt-test:${randomUUID()}:dup`)],
])('%s DuplicateIndex', (_name, make) => {
  it('returns the first key for a repeated hash, null for the first and for the same key again', async () => {
    const idx = make();
    expect(await idx.claim(sha('a'), '000000001')).toBeNull();
    expect(await idx.claim(sha('b'), '000000002')).toBeNull();
    expect(await idx.claim(sha('a'), '000010005')).toBe('000000001');
    expect(await idx.claim(sha('a'), '000000001')).toBeNull();
    if (idx instanceof RedisDuplicateIndex) expect(await idx.clear()).toBeGreaterThanOrEqual(1);
  });

  it('lets exactly one of many concurrent claimers win', async () => {
    const idx = make();
    const keys = [...Array(50)].map((_, i) => rowKey(i, i % 7, 10_000));
    const results = await Promise.all(keys.map((k) => idx.claim(sha('c'), k)));
    const winners = results.filter((r) => r === null);
    expect(winners).toHaveLength(1);
    const first = keys[results.indexOf(null)];
    expect(results.filter((r) => r !== null).every((r) => r === first)).toBe(true);
    if (idx instanceof RedisDuplicateIndex) await idx.clear();
  });
});

describe('RedisDuplicateIndex packing', () => {
  it('keeps keys of every row-key shape exact, including leading zeros and wide shards', async () => {
    const idx = new RedisDuplicateIndex(redis, `capfilt-test:${randomUUID()}:dup`);
    const keys = [rowKey(0, 0, 10_000), rowKey(123456, 99, 10_000), rowKey(7, 31, 1_000_000), '999999999999'];
    for (const k of keys) expect(await idx.claim(sha(`img-${k}`), k)).toBeNull();
    for (const k of keys) expect(await idx.claim(sha(`img-${k}`), '000000000042')).toBe(k);
    await idx.clear();
  });

  it('tells apart hashes that share a bucket, and a fingerprint found off a record boundary is not a match', async () => {
    const prefix = `capfilt-test:${randomUUID()}:dup`;
    // 64 buckets (the minimum): 500 images put ~8 records in each bucket.
    const idx = new RedisDuplicateIndex(redis, prefix, { expectedRows: async () => 1 });
    expect(await idx.bucketCount()).toBe(64);
    const hashes = [...Array(500)].map((_, i) => sha(`distinct-${i}`));
    const firsts = await Promise.all(hashes.map((h, i) => idx.claim(h, String(i).padStart(9, '0'))));
    expect(firsts.every((f) => f === null)).toBe(true);
    // A hash whose 6 fingerprint bytes appear inside the stored records but straddle two of them.
    const bucket = Number(Buffer.from(hashes[0]!, 'hex').readUInt32BE(0) & 63);
    const stored = (await redis.getBuffer(`${prefix}:${bucket}`))!;
    expect(stored.length % RECORD_BYTES).toBe(0);
    const straddling = Buffer.alloc(32);
    straddling.writeUInt32BE(bucket, 0);
    stored.copy(straddling, 4, 3, 9);
    expect(await idx.claim(straddling.toString('hex'), '000000777')).toBeNull();
    for (const [i, h] of hashes.entries()) expect(await idx.claim(h, '000999999')).toBe(String(i).padStart(9, '0'));
    await idx.clear();
    expect(await redis.exists(`${prefix}:${bucket}`, `${prefix}:params`)).toBe(0);
  });

  it('sizes buckets from the expected rows once per run, and every later user gets the stored size', async () => {
    const prefix = `capfilt-test:${randomUUID()}:dup`;
    const a = new RedisDuplicateIndex(redis, prefix, { expectedRows: async () => 1_000_000 });
    const b = new RedisDuplicateIndex(redis, prefix, { expectedRows: async () => 10 });
    expect(await a.bucketCount()).toBe(bucketsFor(1_000_000));
    expect(await b.bucketCount()).toBe(bucketsFor(1_000_000));
    expect(bucketsFor(1_000_000)).toBe(4096);
    await a.claim(sha('x'), '000000001');
    expect(await b.claim(sha('x'), '000000002')).toBe('000000001');
    await a.clear();
  });

  it('rejects what it cannot store exactly', async () => {
    const idx = new RedisDuplicateIndex(redis, `capfilt-test:${randomUUID()}:dup`);
    await expect(idx.claim('aa', '000000001')).rejects.toThrow(/not a hex sha256/);
    await expect(idx.claim(sha('a'), 'k1')).rejects.toThrow(/not a row key/);
    await expect(idx.claim(sha('a'), '1234567890123')).rejects.toThrow(/not a row key/);
  });
});

describe('false-duplicate arithmetic', () => {
  it('counts the bucket bits into the fingerprint', () => {
    expect(fingerprintBits(64)).toBe(54);
    expect(fingerprintBits(bucketsFor(1e9))).toBe(70);
    expect(expectedFalseDuplicates(1e9, bucketsFor(1e9))).toBeCloseTo(1e18 / 2 ** 71, 10);
    expect(expectedFalseDuplicates(1e7, bucketsFor(1e7))).toBeLessThan(1e-5);
  });
});
