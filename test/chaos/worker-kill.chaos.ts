import { join } from 'node:path';
import { Queue } from 'bullmq';
import { describe, expect, it } from 'vitest';
import type { CliProcess } from '../helpers/cli.ts';
import { lastJson, reportFault, rng, runEnv, sleep, useChaosScenario } from '../helpers/chaos-scenario.ts';
import { checkOutput } from '../helpers/output-check.ts';

/**
 * kill -9 of random worker processes of every stage at random moments, again and again, while
 * `capfilt run --no-workers` drives a full CapFilt run (download → caption → filter → write) on
 * one worker process per stage. The output must equal a fault-free run of the same input:
 * every row once, the same status and selected caption, every tar readable.
 */
const ROWS = Number(process.env.CHAOS_ROWS ?? 2000);
const SHARD_ROWS = 100;
const SEED = Number(process.env.CHAOS_SEED ?? 8);
const STAGES = ['download', 'caption', 'filter', 'write'] as const;

/**
 * Kill cadence: a kill every min + random·spread ms. By default it follows the fault-free run's
 * duration so that every stage loses workers several times however fast the machine and the
 * model are (a fixed 5–12 s let a 12-s run finish after 2 kills, 2 stages never hit): about eight
 * kills within the fault-free duration, never closer than 2 s (a worker needs that to start and
 * load its model), at most the 5–12 s that suits a slow, loaded machine.
 */
function cadence(baselineMs: number): { min: number; spread: number } {
  const clamp = (x: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, x));
  return {
    min: Number(process.env.CHAOS_KILL_MIN_MS ?? clamp(baselineMs / 16, 2000, 5000)),
    spread: Number(process.env.CHAOS_KILL_SPREAD_MS ?? clamp(baselineMs / 8, 2000, 7000)),
  };
}

const sc = useChaosScenario(ROWS);

const runArgs = (out: string, extra: string[] = []) => [
  'run', '--input', sc.fx.input, '--out', out, '--shard-rows', String(SHARD_ROWS), '--max-in-flight', '6', '--json', '--progress', 'none', ...extra,
];

describe('chaos: kill -9 of stage workers', () => {
  it(`a ${ROWS}-row run survives repeated SIGKILLs of every stage's workers with output identical to a fault-free run`, async () => {
    const base = sc.kids.start(runArgs(join(sc.fx.dir, 'out-base')), runEnv(sc.redis.url, 'chaos-base', sc.model));
    const b = await base.exited;
    expect(b.code, base.stderr().slice(-3000)).toBe(0);
    const baseSummary = lastJson(base)!;
    const baseline = await checkOutput(join(sc.fx.dir, 'out-base'), ROWS);
    expect(baseline.lost + baseline.duplicates).toBe(0);
    const { min: KILL_MIN_MS, spread: KILL_SPREAD_MS } = cadence(Number(baseSummary.seconds) * 1000);

    const env = runEnv(sc.redis.url, 'chaos-kill', sc.model);
    const out = join(sc.fx.dir, 'out-kill');
    const t0 = Date.now();
    const coordinator = sc.kids.start(runArgs(out, ['--no-workers']), env);
    const workers = new Map<string, CliProcess>();
    const startWorker = (stage: string) => workers.set(stage, sc.kids.start(['worker', '--stages', stage, '--drain-ms', '500'], env));
    for (const s of STAGES) startWorker(s);

    const random = rng(SEED);
    const kills: Record<string, number> = Object.fromEntries(STAGES.map((s) => [s, 0]));
    let order: string[] = [];
    let finished = false;
    void coordinator.exited.then(() => {
      finished = true;
    });
    const deadline = Number(process.env.CHAOS_DEADLINE_S ?? 480) * 1000;
    while (!finished && Date.now() - t0 < deadline) {
      // A worker process needs several seconds to start and load its model on 2 busy cores: kill
      // often enough that every stage loses workers mid-shard, rarely enough that the run advances.
      await sleep(KILL_MIN_MS + random() * KILL_SPREAD_MS);
      if (finished) break;
      // Every stage in turn, in a random order per round, so each stage is hit about equally often.
      if (!order.length) order = [...STAGES].sort(() => random() - 0.5);
      const stage = order.pop()!;
      const w = workers.get(stage)!;
      if (w.child.exitCode === null && w.child.signalCode === null) {
        w.child.kill('SIGKILL');
        await w.exited;
        kills[stage]++;
        if (process.env.CHAOS_VERBOSE) process.stdout.write(`killed ${stage} at ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
      }
      await sleep(random() * 1000);
      startWorker(stage);
    }
    if (!finished) {
      // Say where the run stood before giving up on it.
      const counts: Record<string, unknown> = {};
      for (const stage of STAGES) {
        const q = new Queue(stage, { connection: { url: sc.redis.url }, prefix: 'chaos-kill' });
        counts[stage] = await q.getJobCounts('wait', 'active', 'delayed', 'failed', 'completed', 'prioritized', 'waiting-children');
        await q.close();
      }
      process.stdout.write(`run did not finish; queues: ${JSON.stringify(counts)}\n`);
      coordinator.child.kill('SIGKILL');
    }
    const c = await coordinator.exited;
    if (process.env.CHAOS_VERBOSE) {
      for (const k of sc.kids.all) process.stdout.write(`--- ${k.child.spawnargs.slice(2, 5).join(' ')} (${k.child.pid}):\n${k.stderr().split('\n').filter((l) => !l.includes('"level":20')).slice(-6).join('\n').slice(-2500)}\n`);
    }
    const seconds = (Date.now() - t0) / 1000;
    const summary = lastJson(coordinator);
    const check = await checkOutput(out, ROWS);
    const byRow = new Map(baseline.records.map((r) => [r.rowIndex, r]));
    const changed = check.records.filter((r) => {
      const x = byRow.get(r.rowIndex);
      return !x || x.status !== r.status || x.selected !== r.selected || x.reason !== r.reason;
    }).length;
    const totalKills = Object.values(kills).reduce((a, n) => a + n, 0);
    reportFault('kill -9 stage workers', {
      rows: ROWS, shards: check.shards, kills: totalKills, ...Object.fromEntries(STAGES.map((s) => [`kills_${s}`, kills[s]])),
      lost: check.lost, duplicates: check.duplicates, changed_vs_baseline: changed, bad_tars: check.tarProblems.length,
      exit: c.code ?? String(c.signal), seconds: Math.round(seconds), baseline_seconds: Number(baseSummary.seconds).toFixed(0), kill_every_ms: `${KILL_MIN_MS}+${KILL_SPREAD_MS}`,
    });
    expect(c.code, coordinator.stderr().slice(-3000)).toBe(0);
    expect(summary).toMatchObject({ status: 'done', reconciled: true, rows: ROWS });
    expect(Object.values(kills).every((n) => n > 0), JSON.stringify(kills)).toBe(true);
    expect(check.tarProblems).toEqual([]);
    expect([check.lost, check.duplicates, changed]).toEqual([0, 0, 0]);
    expect(check.rows).toBe(ROWS);
  });
});
