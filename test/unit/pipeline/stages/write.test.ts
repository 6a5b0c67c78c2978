import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { readShardParquet } from '../../../../src/io/writers/shard-parquet.ts';
import { readTarEntries } from '../../../../src/io/writers/tar.ts';
import { FsStagingStore } from '../../../../src/pipeline/staging/fs.ts';
import { writeShard } from '../../../../src/pipeline/stages/write.ts';
import type { ShardState } from '../../../../src/core/shard.ts';
import { testConfig } from '../../../helpers/config.ts';
import { record, scored } from '../../../helpers/records-fixture.ts';

const dir = mkdtempSync(join(tmpdir(), 'capfilt-write-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('writeShard (worker-facing)', () => {
  it('writes the shard from staged images into output.dir, idempotently', async () => {
    const staging = new FsStagingStore(join(dir, 'staging'));
    const out = join(dir, 'out');
    const { config } = testConfig({ 'output.dir': out });
    const kept = scored(0, 0.9, 0.1, 'kept');
    const filtered = scored(1, 0.1, 0.1, 'filtered');
    kept.image!.ref = await staging.putBlob('run', 's0', `${kept.key}.jpg`, new Uint8Array([1, 2, 3]));
    filtered.image!.ref = await staging.putBlob('run', 's0', `${filtered.key}.jpg`, new Uint8Array([4, 5]));
    const state: ShardState = {
      shard: { runId: 'run', shardId: 's0', number: 7, outputName: '00007', inputFile: 'in.csv', indexInFile: 0, rowStart: 0, rowCount: 3 },
      records: [kept, filtered, record(2, { status: 'failed', reason: 'DOWNLOAD_TIMEOUT', reasonDetail: 'headers timeout' })],
      stagesDone: ['download', 'caption', 'filter'],
      timings: { download: 100, caption: 200, filter: 50 },
    };
    const ctx = { config, staging, log: pino({ level: 'silent' }), signal: new AbortController().signal };
    const first = await writeShard(state, ctx);
    const again = await writeShard(state, ctx);
    expect(readdirSync(out).sort()).toEqual(['00007.parquet', '00007.tar', '00007_stats.json', 'filtered']);
    expect(readdirSync(join(out, 'filtered'))).toEqual(['00007.tar']);
    expect(first.stats).toMatchObject({ count: 3, kept: 1, filtered: 1, failed: 1, failed_to_download: 1, timings_ms: { download: 100, caption: 200, filter: 50 } });
    expect(again.stats.count).toBe(3);
    const tarEntries = await readTarEntries(first.paths.tar);
    expect([...tarEntries.keys()]).toEqual(['000070000.jpg', '000070000.txt', '000070000.json']);
    expect([...tarEntries.get('000070000.jpg')!]).toEqual([1, 2, 3]);
    expect(tarEntries.get('000070000.txt')!.toString()).toBe('web text 0');
    expect((await readShardParquet(first.paths.parquet)).map((r) => [r.key, r.status, r.reason])).toEqual([
      ['000070000', 'kept', 'KEPT_WEB_TEXT'],
      ['000070001', 'filtered', 'FILTER_NO_TEXT_KEPT'],
      ['000070002', 'failed', 'DOWNLOAD_TIMEOUT'],
    ]);
  });
});
