import { getPriority, setPriority } from 'node:os';
import type { Command } from 'commander';
import { CapfiltError } from '../core/errors.ts';
import { DEFAULT_PACING } from '../dashboard/pacing.ts';
import { startDashboard } from '../dashboard/server.ts';

interface DashboardFlags {
  host: string;
  port: string;
  token?: string;
  readOnly?: boolean;
  prefix: string;
  redisUrl?: string;
  nice: string;
  maxRps: string;
  clientRps: string;
}

function niceness(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 19) {
    throw new CapfiltError('CLI_USAGE', `--nice must be an integer in [0, 19], got "${value}"`, { option: 'nice', value });
  }
  return n;
}

function rate(option: string, value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0) {
    throw new CapfiltError('CLI_USAGE', `--${option} must be a number ≥ 0, got "${value}"`, { option, value });
  }
  return n;
}

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) {
    throw new CapfiltError('CLI_USAGE', `--port must be an integer in [0, 65535], got "${value}"`, { option: 'port', value });
  }
  return n;
}

export function register(program: Command): void {
  program
    .command('dashboard')
    .description('live web dashboard (runs, filter rates, score histograms, samples, workers), /metrics and bull-board at /queues')
    .option('--host <addr>', 'address to bind; any non-loopback address needs --token', '127.0.0.1')
    .option('--port <n>', 'port to listen on (0 picks a free one)', '8080')
    .option('--token <secret>', 'require this token (Bearer header or the login form); default CAPFILT_DASHBOARD_TOKEN')
    .option('--read-only', 'hide retry, clean and delete actions in /queues')
    .option('--prefix <prefix>', 'deployment key prefix (config redis.prefix)', process.env.CAPFILT_REDIS_PREFIX ?? 'capfilt')
    .option('--redis-url <url>', 'Redis URL (default REDIS_URL or redis://127.0.0.1:6379)')
    .option('--nice <n>', 'CPU niceness of the dashboard process (0–19, 0 leaves it): many clients then slow the dashboard, not workers on the same host', '10')
    .option('--max-rps <n>', 'requests per second the dashboard serves in all; more wait their turn (0 turns pacing off)', String(DEFAULT_PACING.ratePerSec))
    .option('--client-rps <n>', 'requests per second served to one client address (bursts of a page load pass at once)', String(DEFAULT_PACING.clientRatePerSec))
    .action(async (flags: DashboardFlags) => {
      const nice = niceness(flags.nice);
      // A hammered dashboard on a worker host took 0.6 of a core from the run (docs/reliability.md).
      if (nice > getPriority()) setPriority(nice);
      const dashboard = await startDashboard({
        host: flags.host,
        port: port(flags.port),
        token: flags.token ?? process.env.CAPFILT_DASHBOARD_TOKEN ?? null,
        readOnly: flags.readOnly ?? false,
        prefix: flags.prefix,
        redisUrl: flags.redisUrl,
        pacing: { ratePerSec: rate('max-rps', flags.maxRps), clientRatePerSec: rate('client-rps', flags.clientRps) },
      });
      process.stdout.write(`capfilt dashboard: ${dashboard.url} (metrics ${dashboard.url}metrics, queues ${dashboard.url}queues)\n`);
      await new Promise<void>((resolve) => {
        const stop = () => resolve();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      await dashboard.close();
    });
}
