import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readShardParquet } from '../../../src/io/writers/shard-parquet.ts';
import { cli, type CliProcess } from '../../helpers/cli.ts';
import { startFixture, type PipelineFixture } from '../../helpers/pipeline-fixture.ts';
import { REDIS_URL, deletePrefix, uniquePrefix } from '../../helpers/redis-cleanup.ts';

/**
 * Worker processes against one Redis: `capfilt run --no-workers` plans and feeds, separate
 * `capfilt worker` processes do the work. Images are served slowly so that a shard is still
 * being downloaded when a worker is killed or stopped.
 */
let fx: PipelineFixture;
const prefixes: string[] = [];
const children: CliProcess[] = [];

beforeAll(async () => {
  fx = await startFixture(160, { slowMs: 120 });
});
afterAll(async () => {
  for (const c of children) if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill('SIGKILL');
  await fx.close();
  for (const p of prefixes) await deletePrefix(p);
});

function env(prefix: string): Record<string, string> {
  return {
    REDIS_URL,
    CAPFILT_REDIS_PREFIX: prefix,
    CAPFILT_DOWNLOAD_SSRF_ALLOWLIST: '127.0.0.1',
    CAPFILT_DOWNLOAD_CONCURRENCY: '4',
    CAPFILT_DOWNLOAD_RETRIES: '0',
    // A killed worker's lock expires fast and the survivors look for stalled jobs often.
    CAPFILT_PIPELINE_LOCK_DURATION_MS: '3000',
    CAPFILT_PIPELINE_STALLED_INTERVAL_MS: '1000',
    CAPFILT_PIPELINE_CONCURRENCY_DOWNLOAD: '1',
    CAPFILT_LOG_LEVEL: 'debug',
  };
}

function start(args: string[], e: Record<string, string>): CliProcess {
  const c = cli(args, e);
  children.push(c);
  return c;
}

async function waitForActive(prefix: string, stage: string, timeoutMs = 180_000): Promise<void> {
  const q = new Queue(stage, { connection: { url: REDIS_URL }, prefix });
  try {
    const t0 = Date.now();
    while ((await q.getActiveCount()) === 0) {
      if (Date.now() - t0 > timeoutMs) throw new Error(`no active ${stage} job after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 50));
    }
  } finally {
    await q.close();
  }
}

async function expectExactOutput(out: string): Promise<void> {
  const files = readdirSync(out).filter((f) => f.endsWith('.parquet')).sort();
  expect(files).toHaveLength(4);
  const rows = (await Promise.all(files.map((f) => readShardParquet(join(out, f))))).flat();
  expect(rows).toHaveLength(160);
  expect(new Set(rows.map((r) => r.key)).size).toBe(160);
  expect(rows.map((r) => r.rowIndex).sort((a, b) => a - b)).toEqual(Array.from({ length: 160 }, (_, i) => i));
  for (const r of rows) expect(r.status).toBe(fx.failing.has(r.rowIndex) ? 'failed' : 'kept');
}

function summaryOf(p: CliProcess): Record<string, unknown> {
  const lines = p.stdout().trim().split('\n');
  return JSON.parse(lines[lines.length - 1]) as Record<string, unknown>;
}

describe('capfilt worker processes', { timeout: 300_000 }, () => {
  it('a shard of a worker killed with SIGKILL mid-download is taken over by another worker; no row lost or duplicated', async () => {
    const prefix = uniquePrefix('kill');
    prefixes.push(prefix);
    const out = join(fx.dir, 'out-kill');
    const e = env(prefix);
    const run = start(['run', '--input', fx.input, '--out', out, '--stages', 'download,write', '--shard-rows', '40', '--no-workers', '--json', '--progress', 'none'], e);
    const a = start(['worker', '--stages', 'download,write'], e);
    await waitForActive(prefix, 'download');
    a.child.kill('SIGKILL');
    expect((await a.exited).signal).toBe('SIGKILL');
    const b = start(['worker', '--stages', 'download,write'], e);
    const { code } = await run.exited;
    expect(code, run.stderr().slice(-2000)).toBe(0);
    expect(summaryOf(run)).toMatchObject({ status: 'done', reconciled: true, rows: 160, failed: fx.failing.size, kept: 160 - fx.failing.size });
    await expectExactOutput(out);
    b.child.kill('SIGTERM');
    expect((await b.exited).code).toBe(0);
  });

  it('two workers share the work, and SIGTERM drains a worker: it exits 0 and its job is not lost', async () => {
    const prefix = uniquePrefix('share');
    prefixes.push(prefix);
    const out = join(fx.dir, 'out-share');
    const e = env(prefix);
    const a = start(['worker', '--stages', 'download,write', '--drain-ms', '500'], e);
    const b = start(['worker', '--stages', 'download,write'], e);
    await Promise.all([a.waitFor(/serving download,write/), b.waitFor(/serving download,write/)]);
    const run = start(['run', '--input', fx.input, '--out', out, '--stages', 'download,write', '--shard-rows', '40', '--no-workers', '--json', '--progress', 'none'], e);
    await waitForActive(prefix, 'download');
    await a.waitFor(/"stage":"download".*"msg":"stage done"/);
    a.child.kill('SIGTERM');
    const ea = await a.exited;
    expect(ea.code, a.stderr().slice(-2000)).toBe(0);
    expect(a.stderr()).toMatch(/"msg":"workers stopped"/);
    const { code } = await run.exited;
    expect(code, run.stderr().slice(-2000)).toBe(0);
    expect(summaryOf(run)).toMatchObject({ status: 'done', reconciled: true, rows: 160 });
    await expectExactOutput(out);
    const doneBy = (p: CliProcess) => (p.stderr().match(/"stage":"download".*"msg":"stage done"/g) ?? []).length;
    expect(doneBy(a)).toBeGreaterThan(0);
    expect(doneBy(b)).toBeGreaterThan(0);
    b.child.kill('SIGTERM');
    expect((await b.exited).code).toBe(0);
  });
});
