import type { Command } from 'commander';
import { COMMON_FLAGS, RUN_FLAGS, WORKER_FLAGS, addConfigFlags, loadFromFlags } from '../config/cli.ts';
import { CapfiltError } from '../core/errors.ts';
import type { RunSummary } from '../run/summary.ts';
import { logger, setLogLevel } from '../core/logger.ts';

/** Stops on the first SIGINT/SIGTERM (drain and exit), and hard on the second. */
export function interruptSignal(onFirst?: () => void): AbortSignal {
  const ctrl = new AbortController();
  const handler = (sig: NodeJS.Signals) => {
    if (ctrl.signal.aborted) process.exit(130);
    onFirst?.();
    ctrl.abort(new CapfiltError('WORKER_SHUTDOWN', `received ${sig}`));
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return ctrl.signal;
}

/**
 * Under the bar a terminal shows warnings and errors only (printed above the bar), unless a level
 * was asked for (CAPFILT_LOG_LEVEL); worker threads started later inherit the level.
 */
export function quietUnderBar(mode: string): void {
  if (mode === 'bar' && !process.env.CAPFILT_LOG_LEVEL) setLogLevel('warn');
}

export function printSummary(s: RunSummary, json: boolean): void {
  const pct = (n: number) => (s.rows ? ((100 * n) / s.rows).toFixed(1) : '0.0');
  const lines = [
    `capfilt run ${s.runId}: ${s.status}${s.status === 'interrupted' ? ' (rerun the same command to resume)' : s.reconciled ? '' : ' (totals do not reconcile: see run.json)'}`,
    `  rows       ${s.rows} of ${s.totalRows} (${s.shardsWritten} shards written, ${s.shardsSkipped} already done)`,
    `  kept       ${s.kept} (${pct(s.kept)}%)`,
    `  filtered   ${s.filtered} (${pct(s.filtered)}%)`,
    `  failed     ${s.failed} (${pct(s.failed)}%)`,
    `  speed      ${s.rowsPerSec.toFixed(1)} rows/s over ${s.seconds.toFixed(1)} s`,
    `  output     ${s.out}`,
  ];
  if (s.report) lines.push(`  report     ${s.report}`);
  const failedShards = Object.entries(s.failedShards);
  if (failedShards.length) lines.push(`  FAILED SHARDS (${s.rowsInFailedShards} rows not written): ${failedShards.map(([k, v]) => `${k}: ${v}`).join('; ')}`);
  process.stdout.write(`${lines.join('\n')}\n`);
  if (json) {
    const { config: _config, ...rest } = s;
    process.stdout.write(`${JSON.stringify(rest)}\n`);
  }
}

export function register(program: Command): void {
  const cmd = program
    .command('run')
    .description('clean a dataset: plan, feed shards with backpressure, run the stage workers (in-process by default), write shards and run.json');
  addConfigFlags(cmd, [...RUN_FLAGS, ...WORKER_FLAGS, ...COMMON_FLAGS])
    .option('--no-workers', 'only plan and feed; `capfilt worker` processes do the work')
    .option('--progress <mode>', 'auto (bar on a terminal, JSON lines otherwise), bar, json, none', 'auto')
    .option('--json', 'print the summary as one JSON object on the last line')
    .action(async (flags: Record<string, unknown>) => {
      const loaded = loadFromFlags(flags, [...RUN_FLAGS, ...WORKER_FLAGS, ...COMMON_FLAGS]);
      const mode = String(flags.progress);
      if (!['auto', 'bar', 'json', 'none'].includes(mode)) throw new CapfiltError('CLI_USAGE', `--progress expects auto, bar, json or none, got "${mode}"`);
      // Heavy modules load only when the command runs, so every other command starts faster.
      const [{ progressMode }, { runPipeline }, { checkStaging }] = await Promise.all([
        import('../run/progress.ts'), import('../run/run.ts'), import('../pipeline/staging/index.ts'),
      ]);
      await checkStaging(loaded.config);
      const log = logger();
      const progress = progressMode(mode as 'auto');
      quietUnderBar(progress);
      const summary = await runPipeline({
        loaded,
        workers: flags.workers !== false,
        progress,
        log,
        signal: interruptSignal(() => log.warn('interrupted: draining workers; rerun the same command to resume (press again to stop now)')),
      });
      printSummary(summary, flags.json === true);
      process.exitCode = summary.status === 'done' && summary.reconciled ? 0 : summary.status === 'interrupted' ? 130 : 1;
    });
}
