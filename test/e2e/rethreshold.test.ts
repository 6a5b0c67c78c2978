import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isCapfiltError } from '../../src/core/errors.ts';
import { rethreshold } from '../../src/run/rethreshold.ts';
import { writeRunJson, readRunJson } from '../../src/io/writers/run-json.ts';
import { writeShardFiles } from '../../src/io/writers/shard.ts';
import { readShardParquet } from '../../src/io/writers/shard-parquet.ts';
import { readTarEntries } from '../../src/io/writers/tar.ts';
import { record, scored } from '../helpers/records-fixture.ts';

const run = promisify(execFile);
const root = new URL('../..', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'capfilt-rethreshold-'));
const out = join(dir, 'out');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function capfilt(...args: string[]) {
  return run(process.execPath, [join(root, 'bin/capfilt.js'), ...args], { cwd: root, env: { ...process.env, NO_COLOR: '1' } });
}

beforeAll(async () => {
  const images = { get: async (ref: string) => new TextEncoder().encode(`bytes of ${ref}`) };
  const shard0 = [
    scored(0, 0.9, 0.2, 'kept'), // web stays kept at 0.6
    scored(1, 0.55, 0.65, 'kept'), // web drops at 0.6, synthetic stays
    scored(2, 0.3, 0.45, 'filtered'), // filtered; its image is in filtered/00000.tar
    record(3, { status: 'failed', reason: 'DOWNLOAD_TIMEOUT', reasonDetail: 'headers timeout' }),
  ];
  shard0[1].reason = 'KEPT_WEB_AND_SYNTHETIC';
  shard0[1].selected = 'web text 1';
  const shard1 = [{ ...scored(10, 0.2, 0.1, 'kept'), trusted: true, reason: 'KEPT_TRUSTED', selected: 'web text 10' }, scored(11, 0.52, 0.1, 'kept')];
  await writeShardFiles(shard0, { outDir: out, name: '00000', images, startTime: Date.now() });
  await writeShardFiles(shard1, { outDir: out, name: '00001', images, startTime: Date.now() });
  await writeRunJson(out, { runId: 'r1', config: { filter: { itmThreshold: 0.5, itcThreshold: null, selection: 'original-first' }, caption: { keepTop: null } } });
});

describe('capfilt rethreshold', () => {
  it('remakes decisions from stored scores into a new folder, copying images', async () => {
    const to = join(dir, 'strict');
    const { stdout } = await capfilt('rethreshold', out, '--itm', '0.6', '--to', to, '--json');
    const summary = JSON.parse(stdout.trim().split('\n').pop()!);
    expect(summary).toMatchObject({ shards: 2, rows: 6, kept: 3, filtered: 2, failed: 1, changed: 2 });
    expect(readdirSync(to).sort()).toEqual(['00000.parquet', '00000.tar', '00000_stats.json', '00001.parquet', '00001.tar', '00001_stats.json', 'filtered', 'report.html', 'run.json']);
    // The new folder's report is built from its own shards.
    expect(summary.report).toEqual({ file: join(to, 'report.html') });
    expect(readdirSync(join(to, 'filtered')).sort()).toEqual(['00000.tar', '00001.tar']);
    const rows = await readShardParquet(join(to, '00000.parquet'));
    expect(rows.map((r) => [r.status, r.reason, r.selected])).toEqual([
      ['kept', 'KEPT_WEB_TEXT', 'web text 0'],
      ['kept', 'KEPT_SYNTHETIC', 'a synthetic caption 1'],
      ['filtered', 'FILTER_NO_TEXT_KEPT', null],
      ['failed', 'DOWNLOAD_TIMEOUT', null],
    ]);
    expect(rows[1].scores.map((s) => s.kept)).toEqual([false, true]);
    const tar = await readTarEntries(join(to, '00000.tar'));
    expect(tar.get('000070001.txt')!.toString()).toBe('a synthetic caption 1');
    expect(tar.get('000070001.jpg')!.toString()).toBe('bytes of mem:1');
    const other = await readShardParquet(join(to, '00001.parquet'));
    expect(other.map((r) => [r.status, r.reason])).toEqual([['kept', 'KEPT_TRUSTED'], ['filtered', 'FILTER_NO_TEXT_KEPT']]);
    expect([...(await readTarEntries(join(to, 'filtered', '00001.tar'))).keys()]).toContain('000070011.jpg');
    const runJson = await readRunJson(to);
    expect(runJson).toMatchObject({ runId: 'r1', kept: 3, rethreshold: { itmThreshold: 0.6, selection: 'original-first' } });
  });

  it('brings back a filtered row when the threshold is lowered, with its image, and applies the policy', async () => {
    const to = join(dir, 'loose');
    await capfilt('rethreshold', out, '--itm', '0.4', '--policy', 'synthetic-first', '--to', to);
    const rows = await readShardParquet(join(to, '00000.parquet'));
    expect(rows.map((r) => [r.status, r.selected])).toEqual([
      ['kept', 'web text 0'],
      ['kept', 'a synthetic caption 1'],
      ['kept', 'a synthetic caption 2'],
      ['failed', null],
    ]);
    expect((await readTarEntries(join(to, '00000.tar'))).get('000070002.jpg')!.toString()).toBe('bytes of mem:2');
  });

  it('refuses bad thresholds with a usage error, and a non-empty or identical target', async () => {
    await expect(capfilt('rethreshold', out, '--itm', '1.5', '--to', join(dir, 'x'))).rejects.toMatchObject({ code: 2, stderr: expect.stringContaining('--itm must be a number in [0, 1]') });
    await expect(capfilt('rethreshold', out, '--clip-top-fraction', '0', '--to', join(dir, 'x'))).rejects.toMatchObject({ code: 2, stderr: expect.stringContaining('--clip-top-fraction must be above 0') });
    await expect(capfilt('rethreshold', out, '--clip-top-fraction', '1.2', '--to', join(dir, 'x'))).rejects.toMatchObject({ code: 2, stderr: expect.stringContaining('--clip-top-fraction must be a number in [0, 1]') });
    const o = { itmThreshold: 0.6, itcThreshold: null, selection: 'original-first' as const, keepTop: null };
    await expect(rethreshold(out, join(dir, 'strict'), o)).rejects.toSatisfy((e) => isCapfiltError(e, 'OUTPUT_EXISTS'));
    await expect(rethreshold(out, `${out}/`, o)).rejects.toSatisfy((e) => isCapfiltError(e, 'CLI_USAGE'));
  });
});
