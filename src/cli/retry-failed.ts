import type { Command } from 'commander';
import { logger } from '../core/logger.ts';
import { addS3Flags, s3OptionsFrom } from './s3-options.ts';

/**
 * `capfilt retry-failed <out>`: re-runs only the rows of a finished run that failed for a
 * transient reason and merges them into their shards (src/run/retry-failed.ts).
 */
export function register(program: Command): void {
  addS3Flags(program
    .command('retry-failed'))
    .description('re-run only the rows of a finished run that failed for a transient reason (a download that timed out, ...), and merge them into its shards')
    .argument('<out>', 'output folder of a finished run, or its s3://bucket/prefix/')
    .option('--reasons <codes>', 'comma-separated reason codes to retry (default: every transient code, see docs/errors.md)')
    .option('--dry-run', 'only count the rows that would be retried')
    .option('--json', 'print the summary as JSON')
    .action(async (out: string, o: { reasons?: string; dryRun?: boolean; json?: boolean; s3Endpoint?: string; config?: string }) => {
      const { retryFailed } = await import('../run/retry-failed.ts');
      const reasons = o.reasons ? o.reasons.split(',').map((s) => s.trim()).filter(Boolean) : undefined;
      const summary = await retryFailed({ out, s3: s3OptionsFrom(o), reasons, dryRun: o.dryRun === true, log: logger().child({ cmd: 'retry-failed' }) });
      if (summary.report?.error) process.stderr.write(`capfilt: warning: report.html not written: ${summary.report.error}\n`);
      if (o.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
      else {
        const failed = Object.entries(summary.stillFailed).map(([k, v]) => `${k} ${v}`).join(', ');
        process.stdout.write(
          `retry-failed ${out}: ${summary.retried} rows in ${summary.shards} shards${o.dryRun ? ' would be retried' : `: ${summary.recovered} recovered${failed ? `, still failed: ${failed}` : ''}`}\n`,
        );
      }
    });
}
