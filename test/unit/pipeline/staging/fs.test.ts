import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isCapfiltError, retryKindOf } from '../../../../src/core/errors.ts';
import type { ShardState } from '../../../../src/core/shard.ts';
import { FsStagingStore } from '../../../../src/pipeline/staging/fs.ts';
import { stagingContract } from '../../../helpers/staging-contract.ts';

const dir = mkdtempSync(join(tmpdir(), 'capfilt-staging-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const state = (runId: string, shardId: string): ShardState => ({
  shard: { runId, shardId, number: 0, outputName: '00000', inputFile: 'in.csv', indexInFile: 0, rowStart: 0, rowCount: 1 },
  records: [],
  stagesDone: [],
  timings: {},
});

/** The rejection of `p`, which must be STAGING_UNAVAILABLE naming `folder` and the OS error `errno`. */
async function expectUnavailable(p: Promise<unknown>, folder: string, errno: string): Promise<void> {
  const e = await p.then(() => null, (x: unknown) => x);
  expect(isCapfiltError(e, 'STAGING_UNAVAILABLE'), `expected STAGING_UNAVAILABLE, got ${String(e)}`).toBe(true);
  const err = e as Error & { details: Record<string, unknown> };
  expect(err.message).toContain(`staging folder ${folder} `);
  expect(err.message).toContain(errno);
  expect(err.details).toMatchObject({ dir: folder, errno });
}

describe('FsStagingStore', () => {
  stagingContract(() => new FsStagingStore(dir));

  it("deleting a run's last shard removes the run's folder; an earlier shard leaves it", async () => {
    const d = mkdtempSync(join(dir, 'runs-'));
    const s = new FsStagingStore(d);
    await s.putBlob('r9', 's1', 'a.jpg', new Uint8Array([1]));
    await s.putBlob('r9', 's2', 'b.jpg', new Uint8Array([2]));
    await s.deleteShard('r9', 's1');
    expect(readdirSync(join(d, 'r9'))).toEqual(['s2']);
    await s.deleteShard('r9', 's2');
    expect(readdirSync(d)).toEqual([]);
    // Staging into the run again afterwards recreates its folder.
    await s.putBlob('r9', 's3', 'c.jpg', new Uint8Array([3]));
    expect(await s.getBlob('fs:r9/s3/c.jpg')).toEqual(new Uint8Array([3]));
  });

  it('refuses path-like ids and names', async () => {
    const s = new FsStagingStore(dir);
    await expect(s.putBlob('../x', 'y', 'z', new Uint8Array(1))).rejects.toThrow(/not a safe file name/);
    await expect(s.getBlob('fs:r/s/../../etc')).rejects.toThrow(/not a filesystem staging ref|safe file name/);
    await expect(s.getBlob('redis:r/s/n')).rejects.toThrow(/same staging backend/);
  });

  it('a regular file where the staging folder must be: every operation fails with STAGING_UNAVAILABLE naming the folder and ENOTDIR', async () => {
    const notADir = join(dir, 'staging-is-a-file');
    writeFileSync(notADir, 'x');
    const s = new FsStagingStore(notADir);
    await expectUnavailable(s.probe(), notADir, 'EEXIST');
    await expectUnavailable(s.putState(state('r1', 's1')), notADir, 'ENOTDIR');
    await expectUnavailable(s.getState('r1', 's1'), notADir, 'ENOTDIR');
    await expectUnavailable(s.putBlob('r1', 's1', 'k.jpg', new Uint8Array(3)), notADir, 'ENOTDIR');
    await expectUnavailable(s.getBlob('fs:r1/s1/k.jpg'), notADir, 'ENOTDIR');
    await expectUnavailable(s.sizeBytes('r1'), notADir, 'ENOTDIR');
    await expectUnavailable(s.deleteShard('r1', 's1'), notADir, 'ENOTDIR');
  });

  it("a file where a run's folder must be fails that run only", async () => {
    const d = join(dir, 'run-is-a-file');
    mkdirSync(d);
    writeFileSync(join(d, 'rbad'), 'x');
    const s = new FsStagingStore(d);
    await s.probe();
    await expectUnavailable(s.putState(state('rbad', 's1')), d, 'ENOTDIR');
    await s.putState(state('rgood', 's1'));
    expect(await s.getState('rgood', 's1')).toEqual(state('rgood', 's1'));
    // A failed state write leaves no temporary file behind.
    expect(readdirSync(join(d, 'rgood', 's1'))).toEqual(['state.json']);
  });

  it('a full disk (ENOSPC) while staging an image is STAGING_UNAVAILABLE, a code the workers retry', async () => {
    expect(existsSync('/dev/full'), 'this test writes through /dev/full, which answers every write with ENOSPC').toBe(true);
    const d = join(dir, 'full');
    const s = new FsStagingStore(d);
    mkdirSync(join(d, 'r1', 's1'), { recursive: true });
    symlinkSync('/dev/full', join(d, 'r1', 's1', 'blob.k1.jpg'));
    await expectUnavailable(s.putBlob('r1', 's1', 'k1.jpg', new Uint8Array(4096).fill(7)), d, 'ENOSPC');
    // Other images of the shard are still staged.
    const ref = await s.putBlob('r1', 's1', 'k2.jpg', new Uint8Array([1, 2]));
    expect([...(await s.getBlob(ref))]).toEqual([1, 2]);
    // A full disk can clear: workers retry the stage.
    expect(retryKindOf('STAGING_UNAVAILABLE')).toBe('transient');
  });

  it('probe creates a missing folder and leaves nothing in it', async () => {
    const d = join(dir, 'new', 'nested');
    await new FsStagingStore(d).probe();
    expect(readdirSync(d)).toEqual([]);
  });
});
