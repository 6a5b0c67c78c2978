import type { Command } from 'commander';
import { CapfiltError } from '../core/errors.ts';
import { rethreshold, type RethresholdOptions } from '../run/rethreshold.ts';
import { openOutput } from '../io/storage/output.ts';
import { readRunJson } from '../io/writers/run-json.ts';
import { addS3Flags, s3OptionsFrom } from './s3-options.ts';

const POLICIES: Record<string, 'original-first' | 'best-scoring' | 'synthetic-first'> = {
  'original-first': 'original-first',
  best: 'best-scoring',
  'best-scoring': 'best-scoring',
  'synthetic-first': 'synthetic-first',
};

function num(flag: string, v: string | undefined, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < min || n > max) throw new CapfiltError('CLI_USAGE', `${flag} must be a number in [${min}, ${max}], got "${v}"`);
  return n;
}

export function register(program: Command): void {
  addS3Flags(program
    .command('rethreshold'))
    .description('remake the filter decisions of a finished run from its stored scores (no model runs) into a new output folder')
    .argument('<out>', 'output folder of a finished run, or its s3://bucket/prefix/')
    .requiredOption('--to <dir>', 'new output folder or s3:// prefix (must be empty)')
    .option('--itm <p>', 'ITM P(match) threshold (default: the run\'s filter.itmThreshold)')
    .option('--itc <c>', 'also require ITC cosine >= c ("none" to drop the ITC condition; default: the run\'s)')
    .option('--policy <name>', 'caption for key.txt: original-first | best | synthetic-first (default: the run\'s)')
    .option('--keep-top <m>', 'keep at most M synthetic captions per image, by ITC (default: the run\'s caption.keepTop)')
    .option('--clip-min-score <s>', 'CLIP score threshold for runs with the clip stage ("none" to drop it; default: the run\'s clip.minScore)')
    .option('--clip-top-fraction <f>', 'keep texts whose CLIP score is in the top fraction f (0 < f <= 1) of every scored text, threshold computed exactly from the stored scores ("none" to drop it; default: the run\'s clip.topFraction)')
    .option('--select-by <score>', 'score ranking captions for --keep-top: itc, itm or clip (default: the run\'s caption.selectBy)')
    .option('--json', 'print the summary as JSON')
    .action(async (out: string, o: { to: string; itm?: string; itc?: string; policy?: string; keepTop?: string; clipMinScore?: string; clipTopFraction?: string; selectBy?: string; json?: boolean; s3Endpoint?: string; config?: string }) => {
      const s3 = s3OptionsFrom(o);
      const run = (await readRunJson(openOutput(out, s3).store)) ?? {};
      const cfg = (run.config ?? {}) as { filter?: { itmThreshold?: number; itcThreshold?: number | null; selection?: string }; caption?: { keepTop?: number | null; selectBy?: string }; clip?: { minScore?: number | null; topFraction?: number | null } };
      const selectBy = o.selectBy ?? cfg.caption?.selectBy ?? 'itc';
      if (!['itc', 'itm', 'clip'].includes(selectBy)) throw new CapfiltError('CLI_USAGE', `--select-by must be itc, itm or clip, got "${selectBy}"`);
      if (o.policy !== undefined && !POLICIES[o.policy]) throw new CapfiltError('CLI_USAGE', `--policy must be one of ${Object.keys(POLICIES).join(', ')}, got "${o.policy}"`);
      const keepTop = o.keepTop === undefined ? cfg.caption?.keepTop ?? null : num('--keep-top', o.keepTop, 1, 64)!;
      if (keepTop !== null && !Number.isInteger(keepTop)) throw new CapfiltError('CLI_USAGE', `--keep-top must be a whole number, got "${o.keepTop}"`);
      const topFraction = o.clipTopFraction === 'none' ? null : num('--clip-top-fraction', o.clipTopFraction, 0, 1) ?? cfg.clip?.topFraction ?? null;
      if (topFraction === 0) throw new CapfiltError('CLI_USAGE', '--clip-top-fraction must be above 0 (0 would keep nothing), got "0"');
      const summary = await rethreshold(out, o.to, {
        itmThreshold: num('--itm', o.itm, 0, 1) ?? cfg.filter?.itmThreshold ?? 0.5,
        itcThreshold: o.itc === 'none' ? null : num('--itc', o.itc, -1, 1) ?? cfg.filter?.itcThreshold ?? null,
        selection: POLICIES[o.policy ?? cfg.filter?.selection ?? 'original-first'] ?? 'original-first',
        keepTop,
        selectBy: selectBy as RethresholdOptions['selectBy'],
        clipMinScore: o.clipMinScore === 'none' ? null : num('--clip-min-score', o.clipMinScore, -1, 1) ?? cfg.clip?.minScore ?? null,
        clipTopFraction: topFraction,
      }, s3);
      if (summary.report?.error) process.stderr.write(`capfilt: warning: report.html not written: ${summary.report.error}\n`);
      if (o.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
      else {
        process.stdout.write(
          `rethreshold ${out} → ${o.to}: ${summary.shards} shards, ${summary.rows} rows: kept ${summary.kept}, filtered ${summary.filtered}, failed ${summary.failed} (${summary.changed} rows changed)\n${summary.topFraction ? `top fraction ${summary.topFraction.fraction}: threshold ${summary.topFraction.threshold} over ${summary.topFraction.texts} texts (${summary.topFraction.textsAtOrAbove} at or above)\n` : ''}`,
        );
      }
    });
}
