import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { logger } from '../../../src/core/logger.ts';
import { runPipeline } from '../../../src/run/run.ts';
import { testConfig } from '../../helpers/config.ts';
import { REDIS_URL, deletePrefix, uniquePrefix } from '../../helpers/redis-cleanup.ts';

const dir = mkdtempSync(join(tmpdir(), 'capfilt-run-preflight-'));
const prefixes: string[] = [];
afterAll(async () => {
  rmSync(dir, { recursive: true, force: true });
  for (const p of prefixes) await deletePrefix(p);
});
const log = logger().child({ test: 'run-preflight' });

/** A port nothing listens on: bound once, then closed. */
async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

function loaded(input: string, out: string, redisUrl: string, extra: Record<string, unknown> = {}) {
  const prefix = uniquePrefix('preflight');
  prefixes.push(prefix);
  const values = { 'input.path': input, 'output.dir': out, 'pipeline.stages': 'download,write', 'redis.prefix': prefix, 'redis.url': redisUrl, ...extra };
  return testConfig(values);
}

describe('runPipeline checks before it starts', () => {
  it('a missing column fails before Redis is even asked (an unreachable Redis does not mask it)', async () => {
    const input = join(dir, 'bad.csv');
    writeFileSync(input, 'link,caption\nhttp://a.test/1.jpg,one\n');
    const redisUrl = `redis://127.0.0.1:${await closedPort()}`;
    await expect(runPipeline({ loaded: loaded(input, join(dir, 'out-bad'), redisUrl), workers: true, progress: 'none', log })).rejects.toMatchObject({ code: 'INPUT_COLUMN_MISSING' });
  });

  it('an unreachable Redis is REDIS_UNAVAILABLE once the local checks pass, before any worker or shard', async () => {
    const input = join(dir, 'good.csv');
    writeFileSync(input, 'url,caption\nhttp://a.test/1.jpg,one\n');
    const out = join(dir, 'out-noredis');
    const redisUrl = `redis://127.0.0.1:${await closedPort()}`;
    await expect(runPipeline({ loaded: loaded(input, out, redisUrl), workers: true, progress: 'none', log })).rejects.toMatchObject({ code: 'REDIS_UNAVAILABLE' });
    expect(readdirSync(out)).toEqual([]);
  });

  it('an empty input is INPUT_EMPTY; with input.allowEmpty it runs to an empty, reconciled output', async () => {
    const input = join(dir, 'empty.jsonl');
    writeFileSync(input, '');
    await expect(runPipeline({ loaded: loaded(input, join(dir, 'out-empty'), REDIS_URL), workers: true, progress: 'none', log })).rejects.toMatchObject({ code: 'INPUT_EMPTY' });
    const out = join(dir, 'out-allowed');
    const s = await runPipeline({ loaded: loaded(input, out, REDIS_URL, { 'input.allowEmpty': true }), workers: true, progress: 'none', log });
    expect(s).toMatchObject({ status: 'done', reconciled: true, totalRows: 0, rows: 0 });
    expect(existsSync(join(out, 'run.json'))).toBe(true);
  });
});
