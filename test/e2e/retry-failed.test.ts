import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeRunJson } from '../../src/io/writers/run-json.ts';
import { writeShardFiles } from '../../src/io/writers/shard.ts';
import { readShardParquet } from '../../src/io/writers/shard-parquet.ts';
import { readTarEntries } from '../../src/io/writers/tar.ts';
import { testConfig } from '../helpers/config.ts';
import { startFixtureServer, type FixtureServer } from '../helpers/fixture-server.ts';
import { fixture } from '../helpers/image-fixtures.ts';
import { imageOf, record } from '../helpers/records-fixture.ts';

const run = promisify(execFile);
const root = new URL('../..', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'capfilt-retry-'));
const out = join(dir, 'out');
let srv: FixtureServer;

beforeAll(async () => {
  srv = await startFixtureServer(new Map([['/hopper.jpg', { body: fixture('hopper.jpg'), type: 'image/jpeg' }]]));
  const { config } = testConfig({
    'pipeline.stages': ['download', 'write'], 'download.ssrfAllowlist': ['127.0.0.1/32'], 'download.retries': 0, 'image.size': 48,
  });
  const images = { get: async () => new Uint8Array([9, 9, 9]) };
  await writeShardFiles(
    [
      record(0, { status: 'kept', reason: 'KEPT_UNFILTERED', selected: 'web text 0', image: imageOf(0) }),
      record(1, { url: `${srv.url}/hopper.jpg`, status: 'failed', reason: 'DOWNLOAD_TIMEOUT', reasonDetail: 'headers timeout' }),
      record(2, { url: `${srv.url}/status/404`, status: 'failed', reason: 'DOWNLOAD_HTTP_STATUS', reasonDetail: 'HTTP 503' }),
      record(3, { url: `${srv.url}/hopper.jpg`, status: 'failed', reason: 'IMAGE_DECODE_FAILED', reasonDetail: 'not retried' }),
    ],
    { outDir: out, name: '00000', images, startTime: Date.now() },
  );
  await writeRunJson(out, { runId: 'r', config, rows: 4, kept: 1, filtered: 0, failed: 3 });
});
afterAll(async () => {
  await srv.close();
  rmSync(dir, { recursive: true, force: true });
});

async function capfilt(...args: string[]) {
  return run(process.execPath, [join(root, 'bin/capfilt.js'), ...args], { cwd: root, env: { ...process.env, NO_COLOR: '1' } });
}

describe('capfilt retry-failed', () => {
  it('counts with --dry-run, then retries only transient download failures and merges them', async () => {
    const dry = JSON.parse((await capfilt('retry-failed', out, '--dry-run', '--json')).stdout.trim());
    expect(dry).toMatchObject({ shards: 1, retried: 2, recovered: 0 });
    const before = srv.hits.get('/hopper.jpg') ?? 0;
    const summary = JSON.parse((await capfilt('retry-failed', out, '--json')).stdout.trim().split('\n').pop()!);
    expect(summary).toMatchObject({ shards: 1, retried: 2, recovered: 1, stillFailed: { DOWNLOAD_HTTP_STATUS: 1 } });
    expect(srv.hits.get('/hopper.jpg')).toBe(before + 1);
    const rows = await readShardParquet(join(out, '00000.parquet'));
    expect(rows.map((r) => [r.status, r.reason])).toEqual([
      ['kept', 'KEPT_UNFILTERED'],
      ['kept', 'KEPT_UNFILTERED'],
      ['failed', 'DOWNLOAD_HTTP_STATUS'],
      ['failed', 'IMAGE_DECODE_FAILED'],
    ]);
    expect(rows[1].image).toMatchObject({ width: 48, height: 48 });
    expect(rows[2].reasonDetail).toBe('HTTP 404');
    const tar = await readTarEntries(join(out, '00000.tar'));
    expect([...tar.keys()]).toEqual(['000070000.jpg', '000070000.txt', '000070000.json', '000070001.jpg', '000070001.txt', '000070001.json']);
    expect([...tar.get('000070000.jpg')!]).toEqual([9, 9, 9]);
    expect(tar.get('000070001.txt')!.toString()).toBe('web text 1');
    // run.json's totals follow the merged shard, and the retry is on record.
    const runJson = JSON.parse(readFileSync(join(out, 'run.json'), 'utf8'));
    expect(runJson).toMatchObject({ rows: 4, kept: 2, filtered: 0, failed: 2 });
    expect(runJson.retryFailed).toEqual([expect.objectContaining({ retried: 2, recovered: 1, stillFailed: { DOWNLOAD_HTTP_STATUS: 1 } })]);
  });

  it('retries only the reasons asked for', async () => {
    const summary = JSON.parse((await capfilt('retry-failed', out, '--reasons', 'IMAGE_DECODE_FAILED', '--json')).stdout.trim().split('\n').pop()!);
    expect(summary).toMatchObject({ retried: 1, recovered: 1 });
    expect((await readShardParquet(join(out, '00000.parquet')))[3].status).toBe('kept');
    const runJson = JSON.parse(readFileSync(join(out, 'run.json'), 'utf8'));
    expect(runJson).toMatchObject({ rows: 4, kept: 3, filtered: 0, failed: 1 });
    expect(runJson.retryFailed.map((r: { recovered: number }) => r.recovered)).toEqual([1, 1]);
  });
});
