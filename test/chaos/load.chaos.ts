import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { startLoad, type LoadStats } from '../helpers/load.ts';
import { lastJson, reportFault, runEnv, useChaosScenario } from '../helpers/chaos-scenario.ts';
import { checkOutput } from '../helpers/output-check.ts';

/**
 * The dashboard and /metrics under concurrent clients while a full run goes on. The same run is
 * made with and without the load, alternating (quiet, loaded, loaded, quiet, quiet, loaded) so
 * that drift in the machine's other work hits both sides alike; the slowdown is the ratio of
 * median durations. The CPU the dashboard process and the load clients burn is reported too:
 * on a machine with few cores it is what the run loses.
 * The dashboard process runs during every run, so only the requests differ.
 */
const ROWS = Number(process.env.CHAOS_LOAD_ROWS ?? 2000);
const CLIENTS = Number(process.env.CHAOS_LOAD_CLIENTS ?? 16);
const PATHS = ['/api/overview', '/metrics', '/', '/api/runs', '/api/workers', '/metrics'];

/** CPU seconds (user + system) a process has used so far, from /proc (Linux). */
function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

const sc = useChaosScenario(ROWS);

describe('chaos: dashboard and /metrics under load during a run', () => {
  for (const v of [
    { name: 'polling', thinkMs: 250 },
    { name: 'closed loop', thinkMs: 0 },
  ]) it(`${CLIENTS} ${v.name} clients (${v.thinkMs} ms between requests) slow a ${ROWS}-row run by at most 10%`, async () => {
    const env = runEnv(sc.redis.url, `chaos-load-${v.thinkMs}`, sc.model);
    const dash = sc.kids.start(['dashboard', '--port', '0', '--redis-url', sc.redis.url, '--prefix', `chaos-load-${v.thinkMs}`], env);
    await dash.waitFor(/capfilt dashboard: (http:\/\/\S+)/);
    const base = /capfilt dashboard: (http:\/\/\S+)/.exec(dash.stdout())![1];
    const seconds: Record<'quiet' | 'loaded', number[]> = { quiet: [], loaded: [] };
    const dashCpu: Record<'quiet' | 'loaded', number[]> = { quiet: [], loaded: [] };
    const clientCpu: number[] = [];
    const loads: LoadStats[] = [];
    let i = 0;
    for (const mode of ['quiet', 'loaded', 'loaded', 'quiet', 'quiet', 'loaded'] as const) {
      const out = join(sc.fx.dir, `out-load-${v.thinkMs}-${i++}`);
      const cpu0 = cpuSeconds(dash.child.pid!);
      const own0 = process.cpuUsage();
      const load = mode === 'loaded' ? startLoad(base, PATHS, CLIENTS, v.thinkMs) : null;
      const run = sc.kids.start(['run', '--input', sc.fx.input, '--out', out, '--shard-rows', '100', '--json', '--progress', 'none'], env);
      const e = await run.exited;
      if (load) loads.push(await load.stop());
      dashCpu[mode].push(cpuSeconds(dash.child.pid!) - cpu0);
      if (load) {
        const own = process.cpuUsage(own0);
        clientCpu.push((own.user + own.system) / 1e6);
      }
      expect(e.code, run.stderr().slice(-2000)).toBe(0);
      const s = lastJson(run)!;
      expect(s).toMatchObject({ status: 'done', reconciled: true, rows: ROWS });
      const check = await checkOutput(out, ROWS);
      expect([check.lost, check.duplicates, check.tarProblems.length]).toEqual([0, 0, 0]);
      seconds[mode].push(Number(s.seconds));
    }
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const ratio = median(seconds.loaded) / median(seconds.quiet);
    const requests = loads.reduce((n, l) => n + l.requests, 0);
    const loadSeconds = loads.reduce((n, l) => n + l.seconds, 0);
    reportFault(`dashboard + /metrics load (${v.name})`, {
      rows: ROWS, clients: CLIENTS, think_ms: v.thinkMs, runs_each: 3, quiet_s: seconds.quiet.map((x) => x.toFixed(1)).join('/'), loaded_s: seconds.loaded.map((x) => x.toFixed(1)).join('/'),
      slowdown_ratio_median: ratio.toFixed(3), slowdown_ratio_mean: (mean(seconds.loaded) / mean(seconds.quiet)).toFixed(3),
      dashboard_cpu_s_quiet: mean(dashCpu.quiet).toFixed(1), dashboard_cpu_s_loaded: mean(dashCpu.loaded).toFixed(1), client_cpu_s: mean(clientCpu).toFixed(1), requests, req_per_s: (requests / loadSeconds).toFixed(0), errors: loads.reduce((n, l) => n + l.errors, 0),
      p50_ms: Math.max(...loads.map((l) => l.p50Ms)), p99_ms: Math.max(...loads.map((l) => l.p99Ms)), lost: 0, duplicates: 0,
    });
    expect(loads.every((l) => l.errors === 0)).toBe(true);
    expect(requests).toBeGreaterThan(100);
    expect(ratio).toBeLessThanOrEqual(1.1);
    dash.child.kill('SIGTERM');
    await dash.exited;
  });
});
