import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli } from '../helpers/cli.ts';
import { startFixture, type PipelineFixture } from '../helpers/pipeline-fixture.ts';
import { REDIS_URL, deletePrefix, uniquePrefix } from '../helpers/redis-cleanup.ts';
import { capfiltInPty } from '../helpers/terminal.ts';

/**
 * What a person sees in a terminal (a real pseudo-terminal): human log lines, never JSON, and a
 * progress bar that no line tears; and what a machine gets when the output is not a terminal.
 */
let fx: PipelineFixture;
const prefix = uniquePrefix('term');
const env = { REDIS_URL, CAPFILT_REDIS_PREFIX: prefix, CAPFILT_DOWNLOAD_SSRF_ALLOWLIST: '127.0.0.1', CAPFILT_DOWNLOAD_RETRIES: '0' };
const BAR = /^capfilt \|[█░]+\| (\d+)\/(\d+) rows \| [\d.]+ rows\/s \| ETA \S+ \| kept [\d.]+% \| failed \d+ \| in flight \d+$/;

beforeAll(async () => {
  fx = await startFixture(120, { slowMs: 60 });
});
afterAll(async () => {
  await fx.close();
  await deletePrefix(prefix);
});

describe('terminal output', { timeout: 240_000 }, () => {
  it('on a terminal: one intact bar with the stage rates, logs as human lines above it (also while it is drawn), no JSON', async () => {
    // Info level on purpose, and Ctrl-C halfway: log lines before, during and after the bar.
    const r = await capfiltInPty(['run', '--input', fx.input, '--out', join(fx.dir, 'out-tty'), '--stages', 'download,write', '--shard-rows', '20'], { ...env, CAPFILT_LOG_LEVEL: 'info' }, { interruptWhen: /[1-9]\d*\/120 rows/ });
    const screen = r.screen.filter((l) => l.trim());
    expect(r.code, screen.join('\n')).toBe(130);
    expect(r.raw).not.toMatch(/\{"level":/);
    const bars = screen.filter((l) => l.startsWith('capfilt |'));
    expect(bars, screen.join('\n')).toHaveLength(1);
    expect(bars[0]).toMatch(BAR);
    const barAt = screen.indexOf(bars[0]);
    expect(screen[barAt + 1]).toMatch(/^ {2}stages \(average while busy\): download [\d.]+\/s · write [\d.]+\/s$/);
    // Every line above the bar is one whole log line: nothing was written into the bar's line.
    const above = screen.slice(0, barAt);
    for (const l of above) expect(l, screen.join('\n')).toMatch(/^\[\d\d:\d\d:\d\d\] (INFO|WARN|ERROR): \S/);
    expect(above.join('\n')).toMatch(/INFO: run planned/);
    // Logged while the bar was drawn, printed above it.
    expect(above.join('\n'), screen.join('\n')).toMatch(/WARN: interrupted: draining workers/);
    expect(screen.slice(barAt + 2).join('\n')).toMatch(/capfilt run [0-9a-f]{12}: interrupted \(rerun the same command to resume\)/);
  });

  it('a finished run on a terminal: the bar at 100%, the summary and where the report is', async () => {
    const r = await capfiltInPty(['run', '--input', fx.input, '--out', join(fx.dir, 'out-done'), '--stages', 'download,write', '--shard-rows', '20'], { ...env, CAPFILT_LOG_LEVEL: 'info' });
    expect(r.code, r.raw.slice(-3000)).toBe(0);
    const screen = r.screen.filter((l) => l.trim());
    const bars = screen.filter((l) => l.startsWith('capfilt |'));
    expect(bars).toHaveLength(1);
    expect(bars[0]).toContain('120/120 rows');
    expect(bars[0]).toContain('ETA 0s');
    expect(screen.join('\n')).toMatch(/^capfilt run [0-9a-f]{12}: done\n {2}rows {7}120 of 120/m);
    expect(screen.join('\n')).toMatch(/ {2}report {5}\S+report\.html/);
  });

  it('by default a terminal shows only warnings above the bar: just the bar and the summary', async () => {
    const r = await capfiltInPty(['run', '--input', fx.input, '--out', join(fx.dir, 'out-quiet'), '--stages', 'download,write', '--shard-rows', '20'], env);
    expect(r.code, r.raw.slice(-3000)).toBe(0);
    const screen = r.screen.filter((l) => l.trim());
    expect(screen[0]).toMatch(BAR);
    expect(screen[1]).toMatch(/^ {2}stages \(average while busy\)/);
    expect(screen[2]).toMatch(/^capfilt run [0-9a-f]{12}: done$/);
  });

  it('--json on a terminal, or output that is not a terminal: JSON log lines on stderr, progress as JSON', async () => {
    const piped = cli(['run', '--input', fx.input, '--out', join(fx.dir, 'out-pipe'), '--stages', 'download,write', '--shard-rows', '20'], env);
    expect((await piped.exited).code, piped.stderr().slice(-2000)).toBe(0);
    const lines = piped.stderr().trim().split('\n');
    expect(lines.length).toBeGreaterThan(2);
    const parsed = lines.map((l) => JSON.parse(l) as { level: number; msg: string; progress?: { rows: number; stageRowsPerSec?: Record<string, number> } });
    expect(parsed.map((p) => p.msg)).toContain('run planned');
    const last = parsed.filter((p) => p.progress).at(-1)!;
    expect(last.progress).toMatchObject({ rows: 120 });
    expect(Object.keys(last.progress!.stageRowsPerSec ?? {}).sort()).toEqual(['download', 'write']);

    const tty = await capfiltInPty(['run', '--input', fx.input, '--out', join(fx.dir, 'out-json'), '--stages', 'download,write', '--shard-rows', '20', '--json'], env);
    expect(tty.code, tty.raw.slice(-3000)).toBe(0);
    expect(tty.raw).not.toContain('capfilt |');
    const jsonLines = tty.screen.filter((l) => l.startsWith('{'));
    expect(jsonLines.some((l) => (JSON.parse(l) as { msg?: string }).msg === 'progress')).toBe(true);
  });
});
