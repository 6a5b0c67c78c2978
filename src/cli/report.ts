import type { Command } from 'commander';
import { addS3Flags, s3OptionsFrom } from './s3-options.ts';

/** `capfilt report OUT`: (re)builds OUT/report.html from a finished output folder or S3 prefix alone (no Redis). */
export function register(program: Command): void {
  addS3Flags(program
    .command('report'))
    .description('write OUT/report.html for a finished output folder: totals, filter rates per rule and reason, score histograms, labels, failures, a gallery (self-contained HTML)')
    .argument('<out>', 'output folder of a run (NNNNN.parquet, NNNNN.tar, run.json), or its s3://bucket/prefix/')
    .option('--examples <n>', 'gallery rows per status (kept, filtered)', '12')
    .option('--json', 'print { file, bytes, totals } as one JSON object')
    .action(async (outArg: string, flags: Record<string, unknown>) => {
      const { CapfiltError } = await import('../core/errors.ts');
      const n = Number(flags.examples);
      if (!Number.isInteger(n) || n < 0 || n > 500) throw new CapfiltError('CLI_USAGE', `--examples expects an integer in [0, 500], got "${String(flags.examples)}"`);
      const { writeReport } = await import('../report/index.ts');
      const { openOutput } = await import('../io/storage/output.ts');
      const r = await writeReport(openOutput(outArg, s3OptionsFrom(flags)), { galleryPerStatus: n });
      const t = r.data.totals;
      if (flags.json) process.stdout.write(`${JSON.stringify({ file: r.file, bytes: r.bytes, totals: t, shards: r.data.shards })}\n`);
      else process.stdout.write(`capfilt report: ${r.file} (${(r.bytes / 1024).toFixed(0)} KiB; ${t.rows} rows in ${r.data.shards} shards: ${t.kept} kept, ${t.filtered} filtered, ${t.failed} failed)\n`);
    });
}
