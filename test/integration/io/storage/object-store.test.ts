import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isCapfiltError } from '../../../../src/core/errors.ts';
import { closeS3Clients } from '../../../../src/io/storage/s3-client.ts';
import { LocalObjectStore, S3ObjectStore, type ObjectStore } from '../../../../src/io/storage/object-store.ts';
import { startS3Server, type TestS3 } from '../../../helpers/s3-server.ts';

/** The one contract both stores keep, run against a local folder and a real S3-compatible server. */
let s3: TestS3;
const local = mkdtempSync(join(tmpdir(), 'capfilt-store-'));
beforeAll(async () => {
  s3 = await startS3Server();
  await s3.createBucket('capfilt-store');
});
afterAll(async () => {
  closeS3Clients();
  await s3?.dispose();
  rmSync(local, { recursive: true, force: true });
});

const stores: [string, () => ObjectStore][] = [
  ['local folder', () => new LocalObjectStore(join(local, 'out'))],
  ['S3 prefix', () => new S3ObjectStore('s3://capfilt-store/runs/a', s3.options)],
];

describe.each(stores)('ObjectStore on a %s', (_, make) => {
  it('writes whole objects, lists them recursively in name order, reads ranges and streams', async () => {
    const store = make();
    await store.put('00001.parquet', 'parquet bytes');
    await store.put('filtered/00001.tar', new Uint8Array([1, 2, 3, 4, 5]));
    const big = Buffer.alloc(11 * 1024 * 1024);
    for (let i = 0; i < big.length; i += 4096) big[i] = (i / 4096) % 251;
    const file = join(local, 'big.bin');
    writeFileSync(file, big);
    // 11 MiB at 5 MiB parts: a multipart upload on S3.
    await store.putFile('00001.tar', file);
    expect(await store.list()).toEqual([
      { name: '00001.parquet', size: 13 },
      { name: '00001.tar', size: big.length },
      { name: 'filtered/00001.tar', size: 5 },
    ]);
    expect((await store.list('filtered')).map((o) => o.name)).toEqual(['filtered/00001.tar']);
    expect(await store.size('00001.tar')).toBe(big.length);
    expect(await store.size('nothing.here')).toBeNull();
    expect((await store.read('00001.parquet')).toString()).toBe('parquet bytes');
    expect([...(await store.readRange('filtered/00001.tar', 1, 4))]).toEqual([2, 3, 4]);
    const chunks: Buffer[] = [];
    for await (const c of store.stream('00001.tar', 4096 * 3)) chunks.push(c);
    expect(Buffer.concat(chunks).equals(big.subarray(4096 * 3))).toBe(true);
    await store.delete(['00001.parquet', 'not-there']);
    expect((await store.list()).map((o) => o.name)).toEqual(['00001.tar', 'filtered/00001.tar']);
  });

  it('reading an object that does not exist is a coded error', async () => {
    const err = await make().read('missing.json').catch((e: unknown) => e);
    expect(isCapfiltError(err) ? err.code : (err as NodeJS.ErrnoException).code).toMatch(/S3_NO_SUCH_KEY|ENOENT/);
  });
});

describe('S3ObjectStore errors', () => {
  it('names a missing bucket, refused credentials and an unreachable endpoint with their codes', async () => {
    const noBucket = await new S3ObjectStore('s3://no-such-bucket-here/x/', s3.options).list().catch((e: unknown) => e);
    expect(isCapfiltError(noBucket, 'S3_NO_SUCH_BUCKET')).toBe(true);
    // An account the server does not know (s3rver checks the key id, not every signature).
    const saved = process.env.AWS_ACCESS_KEY_ID;
    process.env.AWS_ACCESS_KEY_ID = 'nobody';
    try {
      const denied = await new S3ObjectStore('s3://capfilt-store/x/', { ...s3.options, maxAttempts: 2 }).list().catch((e: unknown) => e);
      expect(isCapfiltError(denied, 'S3_ACCESS_DENIED'), String(denied)).toBe(true);
    } finally {
      process.env.AWS_ACCESS_KEY_ID = saved;
    }
    const away = await new S3ObjectStore('s3://capfilt-store/x/', { ...s3.options, endpoint: 'http://127.0.0.1:9', maxAttempts: 1 }).list().catch((e: unknown) => e);
    expect(isCapfiltError(away, 'S3_UNAVAILABLE'), String(away)).toBe(true);
  });
});
