import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FsStagingStore } from '../../../../src/pipeline/staging/fs.ts';
import { stagingContract } from './contract.ts';

const dir = mkdtempSync(join(tmpdir(), 'capfilt-staging-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('FsStagingStore', () => {
  stagingContract(() => new FsStagingStore(dir));

  it('refuses path-like ids and names', async () => {
    const s = new FsStagingStore(dir);
    await expect(s.putBlob('../x', 'y', 'z', new Uint8Array(1))).rejects.toThrow(/not a safe file name/);
    await expect(s.getBlob('fs:r/s/../../etc')).rejects.toThrow(/not a filesystem staging ref|safe file name/);
    await expect(s.getBlob('redis:r/s/n')).rejects.toThrow(/same staging backend/);
  });
});
