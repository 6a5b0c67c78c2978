import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { readTarEntries, writeTarAtomic } from '../../../../src/io/writers/tar.ts';

const dir = mkdtempSync(join(tmpdir(), 'capfilt-tar-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// A failed read must reject the caller's promise once and leave nothing rejected behind: vitest
// reports a stray rejection as an error of the run, this listener makes it fail the test itself.
const stray: unknown[] = [];
const onStray = (e: unknown) => stray.push(e);
beforeAll(() => process.on('unhandledRejection', onStray));
afterAll(() => process.off('unhandledRejection', onStray));
afterEach(async () => {
  await new Promise((r) => setTimeout(r, 20));
  expect(stray).toEqual([]);
});

describe('readTarEntries', () => {
  it('reads back what writeTarAtomic wrote', async () => {
    const file = join(dir, 'ok.tar');
    await writeTarAtomic(file, [{ key: '000000001', files: [{ ext: 'txt', data: 'a dog' }, { ext: 'jpg', data: new Uint8Array([1, 2, 3]) }] }]);
    const entries = await readTarEntries(file);
    expect([...entries.keys()]).toEqual(['000000001.txt', '000000001.jpg']);
    expect(entries.get('000000001.txt')!.toString()).toBe('a dog');
  });

  it('a missing file is OUTPUT_SHARD_INVALID naming it', async () => {
    const file = join(dir, 'absent.tar');
    await expect(readTarEntries(file)).rejects.toMatchObject({ code: 'OUTPUT_SHARD_INVALID', details: { file } });
  });

  it('a truncated tar is OUTPUT_SHARD_INVALID', async () => {
    const whole = join(dir, 'whole.tar');
    await writeTarAtomic(whole, [{ key: '000000002', files: [{ ext: 'jpg', data: new Uint8Array(4096).fill(7) }] }]);
    const cut = join(dir, 'cut.tar');
    writeFileSync(cut, readFileSync(whole).subarray(0, 1000));
    await expect(readTarEntries(cut)).rejects.toMatchObject({ code: 'OUTPUT_SHARD_INVALID' });
  });
});

describe('writeTarAtomic', () => {
  it('a folder that does not exist is OUTPUT_WRITE_FAILED, with nothing left rejected', async () => {
    const file = join(dir, 'no-such-folder', 'x.tar');
    await expect(writeTarAtomic(file, [{ key: '000000003', files: [{ ext: 'jpg', data: new Uint8Array(70_000).fill(1) }] }])).rejects.toMatchObject({ code: 'OUTPUT_WRITE_FAILED' });
  });
});
