import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { RedisStagingStore } from '../../../../src/pipeline/staging/redis.ts';
import { stagingContract } from '../../../helpers/staging-contract.ts';

const prefix = `test-staging-${process.pid}-${Date.now()}`;
const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');

afterAll(async () => {
  const keys = await redis.keys(`${prefix}:*`);
  expect(keys).toEqual([]);
  redis.disconnect();
});

describe('RedisStagingStore', () => {
  stagingContract(() => new RedisStagingStore(redis, prefix));

  it('shares blobs between two independent connections (two hosts)', async () => {
    const other = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
    try {
      const a = new RedisStagingStore(redis, prefix);
      const b = new RedisStagingStore(other, prefix);
      const ref = await a.putBlob('runx', 'sh', 'img.jpg', new Uint8Array([1, 2, 3]));
      expect([...(await b.getBlob(ref))]).toEqual([1, 2, 3]);
      await b.deleteShard('runx', 'sh');
      expect(await a.sizeBytes('runx')).toBe(0);
    } finally {
      other.disconnect();
    }
  });
});
