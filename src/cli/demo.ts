import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { COMMON_FLAGS, WORKER_FLAGS, addConfigFlags, loadFromFlags } from '../config/cli.ts';
import { parseSetArgs, type LoadedConfig, type Override } from '../config/load.ts';
import { CapfiltError, isCapfiltError } from '../core/errors.ts';
import { logger } from '../core/logger.ts';
import type { DemoClipQuality, DemoRuleQuality } from '../run/demo.ts';
import type { RunSummary } from '../run/summary.ts';
import { interruptSignal, quietUnderBar } from './run.ts';

function int(flag: string, v: unknown, min: number, max: number): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new CapfiltError('CLI_USAGE', `${flag} expects an integer in [${min}, ${max}], got "${String(v)}"`);
  return n;
}

const pct = (x: number | null) => (x === null ? 'n/a' : `${(100 * x).toFixed(1)}%`);

const fixed = (x: number | null) => (x === null ? 'n/a' : x.toFixed(3));
const counts = (o: Record<string, number>) => Object.entries(o).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).map(([k, v]) => `${k} ${v}`).join(', ') || 'none';

/** CLIP's figures beside BLIP's: each rule alone on the web texts, and the run's decision. */
export function clipLines(q: DemoClipQuality, run: RunSummary): string[] {
  const cols = [
    ['BLIP ITM', q.rules.itm, q.itmThreshold],
    ['CLIP', q.rules.clip, q.clipMinScore],
    ['decision', q.rules.decision, null],
  ] as const;
  const shown = cols.filter(([, rule]) => rule !== null);
  const head = shown.map(([name, , t]) => (t === null ? name : `${name} ≥ ${t}`).padStart(16)).join('');
  const row = (label: string, pick: (x: DemoRuleQuality) => number | null) => `    ${label.padEnd(19)}${shown.map(([, rule]) => pct(pick(rule!)).padStart(16)).join('')}`;
  const noise = Object.keys(q.rules.decision.rejected);
  const m = q.meanScore;
  return [
    `  web texts, by rule   ${head}  (each rule alone; decision = all rules, the run's)`,
    row('kept', (x) => x.kept),
    row('precision', (x) => x.precision),
    row('recall', (x) => x.recall),
    ...noise.map((l) => row(`rejected ${l}`, (x) => x.rejected[l] ?? null)),
    `  CLIP score mean      web ${fixed(m.web)} (${Object.entries(m.byNoise).map(([l, v]) => `${l} ${fixed(v)}`).join(', ')}), synthetic ${fixed(m.synthetic)}`,
    `  rejected by rule     ${counts(run.rejectedBy ?? {})}  (texts)`,
    ...(q.labels
      ? [`  zero-shot labels     ${counts(q.labels.counts)}  (top label names a shape of the scene: ${pct(q.labels.topInScene)}; one-shape scenes: ${pct(q.labels.oneShapeAccuracy)})`]
      : []),
  ];
}

export function register(program: Command): void {
  const cmd = program
    .command('demo')
    .description('the whole pipeline on generated noisy image-text pairs with the bundled demo models (BLIP and CLIP); prints filter precision/recall, captioner accuracy and CLIP\'s figures beside BLIP\'s');
  addConfigFlags(cmd, [...WORKER_FLAGS, ...COMMON_FLAGS])
    .option('--rows <n>', 'pairs to generate', '2000')
    .option('--out <dir>', 'output folder (default: a new temporary folder)')
    .option('--seed <n>', 'dataset seed (the default was used neither to train nor to validate the demo model)', '20261129')
    .option('--size <px>', 'rendered image side', '160')
    .option('--dashboard-port <port>', 'port of the live dashboard on 127.0.0.1 (0: a free port)', '0')
    .option('--no-clip', 'run BLIP alone, without the clip stage and the bundled demo CLIP')
    .option('--no-dashboard', 'do not start the dashboard')
    .option('--serve', 'keep the dashboard (and a private Redis) running after the run until Ctrl-C')
    .option('--progress <mode>', 'auto, bar, json, none', 'auto')
    .option('--json', 'print the summary as one JSON object on the last line')
    .action(async (flags: Record<string, unknown>) => {
      const rows = int('--rows', flags.rows, 1, 10_000_000);
      const seed = int('--seed', flags.seed, 0, 2 ** 31 - 1);
      const size = int('--size', flags.size, 32, 1024);
      const dashboardPort = int('--dashboard-port', flags.dashboardPort, 0, 65535);
      const out = resolve(typeof flags.out === 'string' ? flags.out : mkdtempSync(join(tmpdir(), 'capfilt-demo-')));
      const mode = String(flags.progress);
      if (!['auto', 'bar', 'json', 'none'].includes(mode)) throw new CapfiltError('CLI_USAGE', `--progress expects auto, bar, json or none, got "${mode}"`);
      // Validate the user's layers once up front (errors name the option), then let the demo add its defaults.
      const { demoStageDefaults } = await import('../run/demo.ts');
      const specs = [...WORKER_FLAGS, ...COMMON_FLAGS];
      let loaded: LoadedConfig;
      try {
        loaded = loadFromFlags(flags, specs);
      } catch (e) {
        // A CLIP option (say --set clip.minScore=0.3) is valid with the clip stage the demo adds.
        if (!isCapfiltError(e, 'CONFIG_INVALID') || flags.clip === false) throw e;
        loaded = loadFromFlags(flags, specs, demoStageDefaults(true));
      }
      const overrides: Override[] = [];
      for (const [flag, path] of [['device', 'models.device'], ['threads', 'models.threads'], ['precision', 'models.precision'], ['spinning', 'models.spinning'], ['redisUrl', 'redis.url'], ['prefix', 'redis.prefix']] as const) {
        if (flags[flag] !== undefined) overrides.push({ path, value: String(flags[flag]), source: `--${flag.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}` });
      }
      overrides.push(...parseSetArgs((flags.set as string[] | undefined) ?? []));

      const log = logger();
      const { progressMode } = await import('../run/progress.ts');
      quietUnderBar(progressMode(mode as 'auto'));
      const { resolveRedis } = await import('../workers/redis-setup.ts');
      const { runDemo } = await import('../run/demo.ts');
      const redis = await resolveRedis(loaded, log);
      let dashboard: { url: string; close(): Promise<void> } | null = null;
      try {
        if (flags.dashboard !== false) {
          const { startDashboard } = await import('../dashboard/server.ts');
          dashboard = await startDashboard({ redisUrl: redis.url, prefix: loaded.config.redis.prefix, port: dashboardPort, host: '127.0.0.1' });
          process.stderr.write(`capfilt demo: live dashboard at ${dashboard.url}\n`);
        }
        const signal = interruptSignal(() => log.warn('interrupted: draining workers'));
        const s = await runDemo({
          rows, seed, out, size,
          clip: flags.clip !== false,
          configFile: (flags.config as string | undefined) ?? null,
          overrides, env: process.env, log,
          progress: progressMode(mode as 'auto'),
          signal,
          redis,
        });
        const r = s.run;
        const share = (n: number) => (r.rows ? `${((100 * n) / r.rows).toFixed(1)}%` : '0%');
        const lines = [
          `capfilt demo: ${r.status}${r.reconciled ? '' : ' (totals do not reconcile: see run.json)'}`,
          `  rows                 ${r.rows} (seed ${seed})`,
          `  kept                 ${r.kept} (${share(r.kept)})`,
          `  filtered             ${r.filtered} (${share(r.filtered)})`,
          `  failed               ${r.failed} (${share(r.failed)})`,
          `  filter precision     ${pct(s.quality.filterPrecision)}  (kept web texts that describe their image)`,
          `  filter recall        ${pct(s.quality.filterRecall)}  (web texts describing their image that were kept)`,
          `  captioner accuracy   ${pct(s.quality.captionerAccuracy)}  (synthetic captions that describe their image)`,
          `  key.txt accuracy     ${pct(s.quality.selectedAccuracy)}  (selected captions of kept rows that describe their image)`,
          ...(s.quality.clip ? clipLines(s.quality.clip, r) : []),
          `  speed                ${r.rowsPerSec.toFixed(1)} rows/s (${r.seconds.toFixed(1)} s)`,
          `  output               ${r.out}`,
          ...(existsSync(join(r.out, 'report.html')) ? [`  report               ${join(r.out, 'report.html')}  (open in a browser: filter rates, score histograms, examples)`] : []),
          `  dashboard            ${dashboard ? `${dashboard.url}${flags.serve ? ' (serving until Ctrl-C)' : ' (was live during the run; --serve keeps it up)'}` : 'off'}`,
        ];
        process.stdout.write(`${lines.join('\n')}\n`);
        if (flags.json) {
          const { config: _c, ...run } = r;
          process.stdout.write(`${JSON.stringify({ ...run, seed, quality: s.quality, dashboardUrl: dashboard?.url ?? null })}\n`);
        }
        process.exitCode = r.status === 'done' && r.reconciled ? 0 : 1;
        if (flags.serve && dashboard && !signal.aborted) await new Promise<void>((res) => signal.addEventListener('abort', () => res(), { once: true }));
      } finally {
        await dashboard?.close();
        await redis.stop();
      }
    });
}
