import { existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CliProcess } from '../helpers/cli.ts';
import { startFixture, type PipelineFixture } from '../helpers/pipeline-fixture.ts';
import { startChaosRedis, type ChaosRedis } from '../helpers/redis-server.ts';
import { Children, lastJson, modelDir, reportFault, runEnv, sleep } from '../helpers/chaos-scenario.ts';
import { checkOutput } from '../helpers/output-check.ts';

/**
 * Restarts and broken disks: Redis killed and restarted mid-run (AOF), the coordinator killed
 * and started again, the output or staging location unusable. Each run must end with every row
 * once and valid tars; shards finished before a restart must not be written again.
 */
const ROWS = Number(process.env.CHAOS_RESTART_ROWS ?? 1000);
const SHARD_ROWS = 50;

let fx: PipelineFixture;
let model: string;
const kids = new Children();
const redises: ChaosRedis[] = [];

beforeAll(async () => {
  fx = await startFixture(ROWS);
  model = modelDir();
});
afterAll(async () => {
  await kids.killAll();
  await fx?.close();
  for (const r of redises) await r.dispose();
  if (model && !model.endsWith(join('models', 'demo'))) rmSync(model, { recursive: true, force: true });
});

const runArgs = (out: string, extra: string[] = []) => [
  'run', '--input', fx.input, '--out', out, '--shard-rows', String(SHARD_ROWS), '--json', '--progress', 'none', ...extra,
];
const parquets = (out: string) => (existsSync(out) ? readdirSync(out).filter((f) => /^\d+\.parquet$/.test(f)) : []);

async function waitForShards(out: string, n: number, p: CliProcess, timeoutMs = 240_000): Promise<void> {
  const t0 = Date.now();
  while (parquets(out).length < n) {
    if (p.child.exitCode !== null) throw new Error(`run exited (${p.child.exitCode}) before ${n} shards were written:\n${p.stderr().slice(-2000)}`);
    if (Date.now() - t0 > timeoutMs) throw new Error(`fewer than ${n} shards after ${timeoutMs} ms`);
    await sleep(100);
  }
}

/** Starts `capfilt run` again until it is not refused for the dead holder's lock (it expires within 15 s). */
async function rerun(args: string[], env: Record<string, string>): Promise<{ p: CliProcess; attempts: number }> {
  for (let attempts = 1; ; attempts++) {
    const p = kids.start(args, env);
    const e = await p.exited;
    if (e.code !== 0 && /RUN_ACTIVE/.test(p.stderr()) && attempts < 20) {
      await sleep(2000);
      continue;
    }
    return { p, attempts };
  }
}

/**
 * Starts `capfilt run` again; while the killed coordinator's lock lives (up to 15 s) the new one
 * exits with RUN_ACTIVE and is started again. Returns the process once it is past planning.
 */
async function restartUntilRunning(args: string[], env: Record<string, string>): Promise<CliProcess> {
  for (let i = 0; i < 30; i++) {
    const p = kids.start(args, env);
    const planned = await Promise.race([p.waitFor(/"msg":"run planned"/, 120_000).then(() => true, () => false), p.exited.then(() => false)]);
    if (planned || p.child.exitCode === 0) return p;
    if (!/RUN_ACTIVE/.test(p.stderr())) throw new Error(`restarted coordinator failed:\n${p.stderr().slice(-1500)}`);
    await sleep(2000);
  }
  throw new Error('the killed coordinator\'s lock never expired');
}

/** inode and mtime of every finished shard file: a rewritten shard changes both. */
function fingerprints(out: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const f of parquets(out)) {
    for (const name of [f, f.replace('.parquet', '.tar'), f.replace('.parquet', '_stats.json')]) {
      const s = statSync(join(out, name));
      m.set(name, `${s.ino}:${s.mtimeMs}`);
    }
  }
  return m;
}

describe('chaos: restarts', () => {
  for (const v of [
    { name: 'SIGTERM (AOF everysec, as docker-compose runs it)', signal: 'SIGTERM' as const, fsync: 'everysec' as const },
    { name: 'SIGKILL (AOF always)', signal: 'SIGKILL' as const, fsync: 'always' as const },
  ]) {
    it(`Redis stopped with ${v.name} mid-run and started again: the run resumes with every row once`, async () => {
      const redis = await startChaosRedis({ appendfsync: v.fsync });
      redises.push(redis);
      const env = runEnv(redis.url, 'chaos-redis', model);
      const out = join(fx.dir, `out-redis-${v.signal}`);
      const t0 = Date.now();
      const run = kids.start(runArgs(out), env);
      await waitForShards(out, 2, run);
      const doneBefore = parquets(out).length;
      await redis.stop(v.signal);
      await sleep(3000);
      await redis.start();
      // A run that rides out the outage ends by itself; one that does not is killed after 3 minutes.
      const timer = setTimeout(() => run.child.kill('SIGKILL'), 180_000);
      const first = await run.exited;
      clearTimeout(timer);
      let reruns = 0;
      let final = run;
      if (first.code !== 0) {
        const r = await rerun(runArgs(out), env);
        reruns = r.attempts;
        final = r.p;
      }
      const code = final.child.exitCode;
      const check = await checkOutput(out, ROWS);
      // The coordinator says once per outage that it waits for Redis, and once that it is back.
      const waits = run.stderr().split('\n').filter((l) => l.includes('does not answer; waiting for it')).length;
      const backLines = run.stderr().split('\n').filter((l) => l.includes('Redis answers again'));
      const backs = backLines.length;
      const waitedMs = backLines.map((l) => Number(/"downMs":(\d+)/.exec(l)?.[1] ?? NaN)).join('+') || 'none';
      reportFault(`redis restart ${v.signal}`, {
        rows: ROWS, restarts: 1, down_s: 3, shards_before: doneBefore, outage_logged: `${waits}/${backs}`, coordinator_waited_ms: waitedMs, first_exit: first.code ?? (first.signal === 'SIGKILL' ? 'hung(killed after 180 s)' : String(first.signal)), reruns_needed: reruns,
        lost: check.lost, duplicates: check.duplicates, bad_tars: check.tarProblems.length, exit: code ?? 'null', seconds: Math.round((Date.now() - t0) / 1000),
        failed_shards: Object.values((lastJson(final)?.failedShards ?? {}) as Record<string, string>).map((r) => r.split(':')[0]).join('+') || 'none',
      });
      if (first.code !== 0) process.stdout.write(`first run after the Redis restart:\n${run.stderr().split('\n').filter((l) => /"level":(40|50|60)|Error/.test(l)).slice(-5).join('\n')}\n`);
      expect(code, final.stderr().slice(-2000)).toBe(0);
      expect(lastJson(final)).toMatchObject({ status: 'done', reconciled: true, rows: ROWS });
      expect(check.tarProblems).toEqual([]);
      expect([check.lost, check.duplicates, check.rows]).toEqual([0, 0, ROWS]);
      expect(first.code, `the run did not ride out the Redis restart:\n${run.stderr().slice(-1500)}`).toBe(0);
      expect([waits, backs]).toEqual([1, 1]);
    });
  }

  for (const mode of ['separate workers', 'in-process workers'] as const) {
    it(`the coordinator (capfilt run, ${mode}) killed with SIGKILL and started again resumes without rewriting finished shards`, async () => {
      const redis = await startChaosRedis();
      redises.push(redis);
      const env = runEnv(redis.url, 'chaos-coord', model, { CAPFILT_PIPELINE_STAGES: 'download,write' });
      const out = join(fx.dir, `out-coord-${mode.replace(/\W/g, '')}`);
      const extra = mode === 'separate workers' ? ['--no-workers'] : [];
      if (mode === 'separate workers') for (let i = 0; i < 2; i++) kids.start(['worker', '--stages', 'download,write'], env);
      const t0 = Date.now();
      let kills = 0;
      const before = new Map<string, string>();
      let run = kids.start(runArgs(out, extra), env);
      // Kill it twice, at different points of the run.
      for (const at of [4, 10]) {
        await waitForShards(out, at, run);
        run.child.kill('SIGKILL');
        await run.exited;
        kills++;
        for (const [k, fp] of fingerprints(out)) if (!before.has(k)) before.set(k, fp);
        run = await restartUntilRunning(runArgs(out, extra), env);
      }
      const { p: final } = run.child.exitCode === null ? { p: run } : await rerun(runArgs(out, extra), env);
      await final.exited;
      const after = fingerprints(out);
      const rewritten = [...before].filter(([k, fp]) => after.get(k) !== fp).map(([k]) => k);
      const check = await checkOutput(out, ROWS);
      const summary = lastJson(final);
      reportFault(`coordinator kill -9 (${mode})`, {
        rows: ROWS, kills, shards_done_before_kills: before.size / 3, shards_skipped_by_rerun: String(summary?.shardsSkipped), rewritten_files: rewritten.length,
        lost: check.lost, duplicates: check.duplicates, bad_tars: check.tarProblems.length, exit: final.child.exitCode ?? 'null', seconds: Math.round((Date.now() - t0) / 1000),
      });
      expect(final.child.exitCode, final.stderr().slice(-2000)).toBe(0);
      expect(summary).toMatchObject({ status: 'done', reconciled: true, rows: ROWS });
      expect(Number(summary?.shardsSkipped)).toBeGreaterThanOrEqual(before.size / 3);
      expect(rewritten).toEqual([]);
      expect(check.tarProblems).toEqual([]);
      expect([check.lost, check.duplicates, check.rows]).toEqual([0, 0, ROWS]);
    });
  }
});

describe('chaos: unusable output and staging locations', () => {
  it('shard outputs blocked by directories fail those shards with OUTPUT_WRITE_FAILED; a later run completes them', async () => {
    const redis = await startChaosRedis();
    redises.push(redis);
    const env = runEnv(redis.url, 'chaos-disk', model, { CAPFILT_PIPELINE_STAGES: 'download,write', CAPFILT_PIPELINE_ATTEMPTS: '2' });
    const out = join(fx.dir, 'out-disk');
    // Running as root, permissions do not stop writes: a directory where a shard file must go does.
    const blocked = ['00003.parquet', '00007.tar', '00011_stats.json'];
    for (const b of blocked) mkdirSync(join(out, b, 'x'), { recursive: true });
    const first = kids.start(runArgs(out), env);
    const e1 = await first.exited;
    const s1 = lastJson(first);
    const failed = Object.entries((s1?.failedShards ?? {}) as Record<string, string>);
    for (const b of blocked) rmSync(join(out, b), { recursive: true, force: true });
    const second = kids.start(runArgs(out), env);
    const e2 = await second.exited;
    const s2 = lastJson(second);
    const check = await checkOutput(out, ROWS);
    reportFault('output path blocked', {
      rows: ROWS, blocked_shards: blocked.length, first_exit: e1.code ?? 'null', first_status: String(s1?.status), failed_shards: failed.length,
      reason: failed[0]?.[1].split(':')[0] ?? 'none', rerun_exit: e2.code ?? 'null', rerun_written: String(s2?.shardsWritten),
      lost: check.lost, duplicates: check.duplicates, bad_tars: check.tarProblems.length,
    });
    expect(e1.code).toBe(1);
    expect(s1).toMatchObject({ status: 'failed', rowsInFailedShards: blocked.length * SHARD_ROWS });
    expect(failed).toHaveLength(blocked.length);
    for (const [, reason] of failed) expect(reason).toMatch(/^OUTPUT_WRITE_FAILED: .*(EISDIR|is a directory|rename)/i);
    expect(e2.code, second.stderr().slice(-2000)).toBe(0);
    expect(s2).toMatchObject({ status: 'done', reconciled: true, rows: ROWS, shardsWritten: blocked.length });
    expect(check.tarProblems).toEqual([]);
    expect([check.lost, check.duplicates, check.rows]).toEqual([0, 0, ROWS]);
  });

  it('a staging location that is a file stops the run with a coded error; a later run with a usable one completes', async () => {
    const redis = await startChaosRedis();
    redises.push(redis);
    const env = runEnv(redis.url, 'chaos-staging', model, { CAPFILT_PIPELINE_STAGES: 'download,write' });
    const out = join(fx.dir, 'out-staging');
    const notADir = join(fx.dir, 'staging-is-a-file');
    writeFileSync(notADir, 'x');
    const t1 = Date.now();
    const first = kids.start(runArgs(out, ['--staging-dir', notADir]), env);
    const e1 = await first.exited;
    const firstSeconds = (Date.now() - t1) / 1000;
    const firstLines = first.stderr().trim().split('\n');
    const code1 = /capfilt: ([A-Z][A-Z_]+):/.exec(first.stderr()) ?? /"code":"([A-Z][A-Z_]+)"/.exec(first.stderr());
    // The start-of-run check stops the run before it plans, loads models or writes anything.
    const outputAfterFirst = existsSync(out) ? readdirSync(out) : [];
    const second = kids.start(runArgs(out, ['--staging-dir', join(fx.dir, 'staging-ok')]), env);
    const e2 = await second.exited;
    const check = await checkOutput(out, ROWS);
    reportFault('staging path unusable', {
      rows: ROWS, first_exit: e1.code ?? String(e1.signal), first_error: code1?.[1] ?? 'none', first_stderr_lines: firstLines.length,
      first_seconds: firstSeconds.toFixed(1), rerun_exit: e2.code ?? 'null',
      lost: check.lost, duplicates: check.duplicates, bad_tars: check.tarProblems.length,
    });
    expect(e1.code).toBe(1);
    expect(e1.signal).toBeNull();
    // One coded line naming the staging folder and the OS reason; no stack trace.
    expect(firstLines, first.stderr().slice(-1500)).toHaveLength(1);
    expect(firstLines[0]).toMatch(/^capfilt: STAGING_UNAVAILABLE: staging folder .* cannot be used .*(EEXIST|ENOTDIR)/);
    expect(firstLines[0]).toContain(notADir);
    expect(code1?.[1]).toBe('STAGING_UNAVAILABLE');
    expect(outputAfterFirst).toEqual([]);
    expect(e2.code, second.stderr().slice(-2000)).toBe(0);
    expect(lastJson(second)).toMatchObject({ status: 'done', reconciled: true, rows: ROWS });
    expect([check.lost, check.duplicates, check.rows]).toEqual([0, 0, ROWS]);
  });
});
