import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli } from '../helpers/cli.ts';
import { startFixture, type PipelineFixture } from '../helpers/pipeline-fixture.ts';
import { REDIS_URL, deletePrefix, uniquePrefix } from '../helpers/redis-cleanup.ts';

let fx: PipelineFixture;
const prefix = uniquePrefix('clirun');
const env = { REDIS_URL, CAPFILT_REDIS_PREFIX: prefix, CAPFILT_DOWNLOAD_SSRF_ALLOWLIST: '127.0.0.1', CAPFILT_DOWNLOAD_RETRIES: '0' };

beforeAll(async () => {
  fx = await startFixture(90);
});
afterAll(async () => {
  await fx.close();
  await deletePrefix(prefix);
});

describe('capfilt run / status', { timeout: 240_000 }, () => {
  it('runs, logs JSON progress lines when not on a terminal, prints the summary, and status reads the run back', async () => {
    const out = join(fx.dir, 'out');
    const run = cli(['run', '--input', fx.input, '--out', out, '--stages', 'download,write', '--shard-rows', '30', '--json'], env);
    const { code } = await run.exited;
    expect(code, run.stderr().slice(-2000)).toBe(0);
    const progress = run.stderr().split('\n').filter((l) => l.includes('"msg":"progress"')).map((l) => JSON.parse(l) as { progress: { rows: number; totalRows: number; rowsPerSec: number; keptPct: number } });
    expect(progress.length).toBeGreaterThan(0);
    expect(progress.at(-1)!.progress).toMatchObject({ rows: 90, totalRows: 90 });
    const lines = run.stdout().trim().split('\n');
    expect(lines[0]).toMatch(/^capfilt run [0-9a-f]{12}: done$/);
    const summary = JSON.parse(lines.at(-1)!) as { runId: string; rows: number; kept: number; failed: number; reconciled: boolean };
    expect(summary).toMatchObject({ rows: 90, failed: fx.failing.size, kept: 90 - fx.failing.size, reconciled: true });

    const status = cli(['status', summary.runId, '--json'], env);
    expect((await status.exited).code).toBe(0);
    const st = JSON.parse(status.stdout()) as { runs: { runId: string; status: string; totals: { rows: number; kept: number }; inFlight: number }[]; queues: Record<string, unknown> };
    expect(st.runs).toHaveLength(1);
    expect(st.runs[0]).toMatchObject({ runId: summary.runId, status: 'done', totals: { rows: 90, kept: summary.kept }, inFlight: 0 });
    expect(Object.keys(st.queues).sort()).toEqual(['caption', 'clip', 'download', 'filter', 'write']);
  });

  it('rejects a bad option naming the option, what was expected, what was given and where from', async () => {
    const run = cli(['run', '--input', fx.input, '--out', join(fx.dir, 'x'), '--max-in-flight', '0'], env);
    expect((await run.exited).code).toBe(1);
    expect(run.stderr()).toContain('CONFIG_INVALID: option pipeline.maxInFlightShards: expected a number > 0, got 0 (from --max-in-flight)');
    const worker = cli(['worker', '--stages', 'download,resize'], env);
    expect((await worker.exited).code).toBe(2);
    expect(worker.stderr()).toContain('--stages expects a comma-separated list of download, caption, filter, clip, write, got "download,resize"');
  });
});
