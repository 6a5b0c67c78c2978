import { expect, it } from 'vitest';
import { isCapfiltError } from '../../src/core/errors.ts';
import type { ShardState } from '../../src/core/shard.ts';
import type { StagingStore } from '../../src/pipeline/staging/types.ts';

/** The behaviour both staging backends must share; run by each backend's test file. */
export function stagingContract(open: () => StagingStore): void {
  const runId = `run${Math.random().toString(36).slice(2, 8)}`;
  const state = (shardId: string): ShardState => ({
    shard: { runId, shardId, number: 0, outputName: '00000', inputFile: 'in.csv', indexInFile: 0, rowStart: 0, rowCount: 1 },
    records: [],
    stagesDone: ['download'],
    timings: { download: 12 },
  });

  it('round-trips state and blobs, overwrites, accounts size and deletes a shard', async () => {
    const s = open();
    expect(await s.getState(runId, 's1')).toBeNull();
    await s.putState(state('s1'));
    expect(await s.getState(runId, 's1')).toEqual(state('s1'));

    const bytes = new Uint8Array(1000).map((_, i) => i % 251);
    const ref = await s.putBlob(runId, 's1', 'k1.jpg', bytes);
    expect(Buffer.from(await s.getBlob(ref)).equals(Buffer.from(bytes))).toBe(true);
    await s.putBlob(runId, 's1', 'k1.jpg', bytes.subarray(0, 400));
    expect((await s.getBlob(ref)).length).toBe(400);
    await s.putBlob(runId, 's2', 'k2.jpg', bytes);
    await s.putState(state('s2'));

    const size = await s.sizeBytes(runId);
    const stateBytes = JSON.stringify(state('s1')).length;
    expect(size).toBe(2 * stateBytes + 400 + 1000);

    await s.deleteShard(runId, 's1');
    await s.deleteShard(runId, 's1');
    expect(await s.getState(runId, 's1')).toBeNull();
    const missing = await s.getBlob(ref).catch((e: unknown) => e);
    expect(isCapfiltError(missing, 'STAGING_BLOB_MISSING')).toBe(true);
    expect(await s.sizeBytes(runId)).toBe(stateBytes + 1000);
    await s.deleteShard(runId, 's2');
    expect(await s.sizeBytes(runId)).toBe(0);
    await s.close();
  });
}
