import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { MemoryDuplicateIndex, RedisDuplicateIndex } from '../../../src/io/duplicates.ts';

const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', { lazyConnect: true });
afterAll(() => redis.quit());

describe.each([
  ['memory', () => new MemoryDuplicateIndex()],
  ['redis', () => new RedisDuplicateIndex(redis, `capfilt-test:${randomUUID()}:dup`)],
])('%s DuplicateIndex', (_name, make) => {
  it('returns the first key for a repeated hash, null for the first and for the same key again', async () => {
    const idx = make();
    expect(await idx.claim('aa', '000000001')).toBeNull();
    expect(await idx.claim('bb', '000000002')).toBeNull();
    expect(await idx.claim('aa', '000010005')).toBe('000000001');
    expect(await idx.claim('aa', '000000001')).toBeNull();
    if (idx instanceof RedisDuplicateIndex) expect(await idx.clear()).toBe(2);
  });

  it('lets exactly one of many concurrent claimers win', async () => {
    const idx = make();
    const results = await Promise.all([...Array(50)].map((_, i) => idx.claim('cc', `k${i}`)));
    const winners = results.filter((r) => r === null);
    expect(winners).toHaveLength(1);
    const first = `k${results.indexOf(null)}`;
    expect(results.filter((r) => r !== null).every((r) => r === first)).toBe(true);
    if (idx instanceof RedisDuplicateIndex) await idx.clear();
  });
});
