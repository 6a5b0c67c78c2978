import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runIdFor } from '../../../src/pipeline/shards.ts';
import { Children, lastJson, modelDir, runEnv, sleep } from '../../helpers/chaos-scenario.ts';
import { checkOutput } from '../../helpers/output-check.ts';
import { startFixture, type PipelineFixture } from '../../helpers/pipeline-fixture.ts';
import { startRedisCluster, type LocalCluster } from '../../helpers/redis-cluster.ts';

/**
 * capfilt on a real Redis Cluster (3 masters + 3 replicas on 127.0.0.1): a run's queues and
 * its keys spread over the masters, and a master killed with SIGKILL mid-run is replaced by its
 * replica while the run goes on, ending with every row once.
 */
const ROWS = 240;
const SHARD_ROWS = 20;
const PREFIX = 'cl';
const STAGES = ['download', 'caption', 'filter', 'write'];

let cluster: LocalCluster;
let fx: PipelineFixture;
let model: string;
const kids = new Children();

beforeAll(async () => {
  cluster = await startRedisCluster({ masters: 3, replicas: 1 });
  fx = await startFixture(ROWS);
  model = modelDir();
}, 120_000);
afterAll(async () => {
  await kids.killAll();
  await fx?.close();
  await cluster?.dispose();
});

const runArgs = (out: string) => ['run', '--input', fx.input, '--out', out, '--shard-rows', String(SHARD_ROWS), '--json', '--progress', 'none'];
const parquets = (out: string) => (existsSync(out) ? readdirSync(out).filter((f) => /^\d+\.parquet$/.test(f)) : []);

describe('Redis Cluster', { timeout: 400_000 }, () => {
  it('runs a job through the cluster with every row once; queues, run keys and duplicate index spread over the masters', async () => {
    const out = join(fx.dir, 'out-cluster');
    const run = kids.start(runArgs(out), runEnv(cluster.url, PREFIX, model));
    const e = await run.exited;
    expect(e.code, run.stderr().slice(-3000)).toBe(0);
    expect(lastJson(run)).toMatchObject({ status: 'done', rows: ROWS });
    const check = await checkOutput(out, ROWS);
    expect([check.lost, check.duplicates, check.rows, check.tarProblems]).toEqual([0, 0, ROWS, []]);

    // BullMQ keeps each queue's `meta` key for the queue's life: where it lives is where the queue lives.
    const queueMasters = await Promise.all(STAGES.map((s) => cluster.masterOf(`${PREFIX}:{${PREFIX}.${s}}:meta`)));
    const runMaster = await cluster.masterOf(`${PREFIX}:run:{${runIdFor(out)}}:meta`);
    expect(new Set(queueMasters).size).toBeGreaterThanOrEqual(2);
    const perMaster = await cluster.keysPerMaster();
    process.stdout.write(`cluster keys per master after the run: ${JSON.stringify(perMaster)}; queues on ${JSON.stringify(Object.fromEntries(STAGES.map((s, i) => [s, queueMasters[i]])))}; run keys on ${runMaster}\n`);
    // 240 images in 64 duplicate-index buckets: every master holds some.
    expect(Object.values(perMaster).every((n) => n > 0)).toBe(true);
  });

  it('a master killed with SIGKILL mid-run is replaced by its replica; the run ends with every row once', async () => {
    const out = join(fx.dir, 'out-failover');
    const env = runEnv(cluster.url, PREFIX, model);
    const t0 = Date.now();
    const run = kids.start(runArgs(out), env);
    while (parquets(out).length < 2) {
      if (run.child.exitCode !== null) throw new Error(`run ended before the kill:\n${run.stderr().slice(-2000)}`);
      if (Date.now() - t0 > 180_000) throw new Error('no shard written within 180 s');
      await sleep(100);
    }
    // The harshest master to lose: the one holding the run's own keys (state, totals, lock).
    const victim = await cluster.masterOf(`${PREFIX}:run:{${runIdFor(out)}}:meta`);
    const before = parquets(out).length;
    await cluster.kill(victim);
    await cluster.waitForFailover(victim, 60_000);
    const timer = setTimeout(() => run.child.kill('SIGKILL'), 240_000);
    let final = run;
    const first = await run.exited;
    clearTimeout(timer);
    if (first.code !== 0) {
      // A write acknowledged by the dead master but not yet replicated is lost with it; the run
      // may stop on it, and the same command then finishes the run.
      for (let i = 0; i < 10; i++) {
        final = kids.start(runArgs(out), env);
        const e = await final.exited;
        if (e.code === 0 || !/RUN_ACTIVE/.test(final.stderr())) break;
        await sleep(2000);
      }
    }
    const check = await checkOutput(out, ROWS);
    process.stdout.write(`failover: killed master ${victim} after ${before} shards; first run exit ${first.code}; ${Math.round((Date.now() - t0) / 1000)} s; lost ${check.lost}, duplicated ${check.duplicates}\n`);
    expect(final.child.exitCode, `${run.stderr().slice(-2000)}\n---\n${final.stderr().slice(-2000)}`).toBe(0);
    expect(lastJson(final)).toMatchObject({ status: 'done', rows: ROWS });
    expect([check.lost, check.duplicates, check.rows, check.tarProblems]).toEqual([0, 0, ROWS, []]);
    expect(first.code, `the run did not ride out the failover:\n${run.stderr().slice(-2500)}`).toBe(0);
  });
});
