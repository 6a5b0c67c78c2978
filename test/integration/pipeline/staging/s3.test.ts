import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isCapfiltError, retryKindOf } from '../../../../src/core/errors.ts';
import { closeS3Clients } from '../../../../src/io/storage/s3-client.ts';
import { S3ObjectStore } from '../../../../src/io/storage/object-store.ts';
import { checkStaging } from '../../../../src/pipeline/staging/index.ts';
import { S3StagingStore } from '../../../../src/pipeline/staging/s3.ts';
import { testConfig } from '../../../helpers/config.ts';
import { stagingContract } from '../../../helpers/staging-contract.ts';
import { startS3Server, type TestS3 } from '../../../helpers/s3-server.ts';

const BUCKET = 'capfilt-staging';
const PREFIX = `s3://${BUCKET}/staging/`;
let s3: TestS3;

beforeAll(async () => {
  s3 = await startS3Server();
  await s3.createBucket(BUCKET);
});
afterAll(async () => {
  // Every test deletes what it staged: the bucket holds nothing at the end.
  if (s3) expect(await new S3ObjectStore(`s3://${BUCKET}/`, s3.options).list()).toEqual([]);
  closeS3Clients();
  await s3?.dispose();
});

const config = (values: Record<string, unknown>) =>
  testConfig({ 's3.endpoint': s3.endpoint, 's3.maxAttempts': 2, ...values }).config;

describe('S3StagingStore on a real S3-compatible server (s3rver)', () => {
  stagingContract(() => new S3StagingStore(PREFIX, s3.options));

  it('keeps state and images under <prefix>/<runId>/<shardId>/ and a second client (another host) reads them by ref', async () => {
    const a = new S3StagingStore(PREFIX, s3.options);
    const b = new S3StagingStore(PREFIX, { ...s3.options, uploadConcurrency: 1 });
    const ref = await a.putBlob('runk', 'sh1', 'r0.jpg', new Uint8Array([7, 8, 9]));
    expect(ref).toBe('s3:runk/sh1/r0.jpg');
    expect([...(await b.getBlob(ref))]).toEqual([7, 8, 9]);
    // The shard "sh1" is not a prefix match for "sh10": deleting one leaves the other.
    await a.putBlob('runk', 'sh10', 'r1.jpg', new Uint8Array([1]));
    const raw = new S3ObjectStore(PREFIX, s3.options);
    expect((await raw.list('runk')).map((o) => o.name)).toEqual(['runk/sh1/blob.r0.jpg', 'runk/sh10/blob.r1.jpg']);
    await b.deleteShard('runk', 'sh1');
    expect((await raw.list('runk')).map((o) => o.name)).toEqual(['runk/sh10/blob.r1.jpg']);
    await a.deleteShard('runk', 'sh10');
    expect(await a.sizeBytes('runk')).toBe(0);
  });

  it('refuses path-like ids and names and refs of another backend', async () => {
    const s = new S3StagingStore(PREFIX, s3.options);
    await expect(s.putBlob('../x', 'y', 'z', new Uint8Array(1))).rejects.toThrow(/not a safe object name/);
    await expect(s.getBlob('s3:r/s/..')).rejects.toThrow(/not a safe object name/);
    await expect(s.getBlob('fs:r/s/n.jpg')).rejects.toThrow(/same staging backend/);
  });

  it('through a killed and restarted server: getBlob fails with the transient S3_UNAVAILABLE during the outage and works after the restart', async () => {
    const s = new S3StagingStore(PREFIX, { ...s3.options, maxAttempts: 2 });
    const ref = await s.putBlob('runo', 'sh', 'img.jpg', new Uint8Array([4, 2]));
    await s3.stop('SIGKILL');
    try {
      const err = await s.getBlob(ref).catch((e: unknown) => e);
      expect(isCapfiltError(err, 'S3_UNAVAILABLE'), String(err)).toBe(true);
      expect(retryKindOf((err as { code: 'S3_UNAVAILABLE' }).code)).toBe('transient');
    } finally {
      await s3.start();
    }
    expect([...(await s.getBlob(ref))]).toEqual([4, 2]);
    await s.deleteShard('runo', 'sh');
  });
});

describe('checkStaging with staging.backend s3', () => {
  it('passes for a writable bucket and leaves no probe object', async () => {
    await checkStaging(config({ 'staging.backend': 's3', 'staging.dir': PREFIX, 'output.dir': 'out' }));
    // The derived <output.dir>/.staging/ of an s3:// output.dir.
    await checkStaging(config({ 'staging.backend': 's3', 'output.dir': `s3://${BUCKET}/runs/a` }));
    expect(await new S3ObjectStore(`s3://${BUCKET}/`, s3.options).list()).toEqual([]);
  });

  it('stops on a missing bucket (S3_NO_SUCH_BUCKET) and refused credentials (S3_ACCESS_DENIED)', async () => {
    const missing = await checkStaging(config({ 'staging.backend': 's3', 'staging.dir': 's3://no-such-staging-bucket/x/' })).catch((e: unknown) => e);
    expect(isCapfiltError(missing, 'S3_NO_SUCH_BUCKET'), String(missing)).toBe(true);
    const saved = process.env.AWS_ACCESS_KEY_ID;
    process.env.AWS_ACCESS_KEY_ID = 'nobody';
    try {
      // Another option set, so a fresh client reads the changed credentials.
      const denied = await checkStaging(config({ 'staging.backend': 's3', 'staging.dir': PREFIX, 's3.uploadConcurrency': 3 })).catch((e: unknown) => e);
      expect(isCapfiltError(denied, 'S3_ACCESS_DENIED'), String(denied)).toBe(true);
    } finally {
      process.env.AWS_ACCESS_KEY_ID = saved;
    }
  });
});
