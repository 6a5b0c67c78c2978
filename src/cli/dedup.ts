import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import { CapfiltError } from '../core/errors.ts';
import { DEDUP_DEFAULTS, dedup } from '../run/dedup.ts';
import type { ProgressFn } from '../pipeline/dedup/kmeans.ts';

function int(flag: string, v: string | undefined, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new CapfiltError('CLI_USAGE', `${flag} must be a whole number in [${min}, ${max}], got "${v}"`);
  return n;
}

/** A bar on a terminal, one per phase (k-means, assign, pairwise, write); nothing otherwise. */
function phaseBar(mode: string): { progress?: ProgressFn; stop(): void } {
  if (mode === 'none' || (mode === 'auto' && !process.stderr.isTTY)) return { stop() {} };
  const bar = new cliProgress.SingleBar(
    { format: 'capfilt dedup |{bar}| {phase} {value}/{total} | ETA {eta_formatted}', hideCursor: true, stream: process.stderr, etaBuffer: 20 },
    cliProgress.Presets.shades_classic,
  );
  let phase = '';
  return {
    progress(p, done, total) {
      if (p !== phase) {
        if (phase) bar.stop();
        phase = p;
        bar.start(total, done, { phase: p.padEnd(8) });
      } else bar.update(done);
    },
    stop: () => phase && bar.stop(),
  };
}

export function register(program: Command): void {
  program
    .command('dedup')
    .description('drop semantic near-duplicate images (SemDeDup over the embeddings saved with --save-embeddings) into a new output folder')
    .argument('<out>', 'output folder of a finished run with embeddings/')
    .requiredOption('--semantic <cosine>', 'near-duplicate threshold: image embeddings with cosine at or above it (in (0, 1], e.g. 0.95)')
    .requiredOption('--to <dir>', 'new output folder (must be empty)')
    .option('--clusters <k>', 'k-means clusters (default ⌈√rows⌉; only rows of one cluster are compared)')
    .option('--iterations <n>', `k-means iterations (default ${DEDUP_DEFAULTS.iterations})`)
    .option('--sample-per-cluster <n>', `k-means trains on at most this many rows per cluster (default ${DEDUP_DEFAULTS.samplePerCluster})`)
    .option('--seed <n>', `k-means seed (default ${DEDUP_DEFAULTS.seed})`)
    .option('--threads <n>', 'CPU threads for the inner products (default: one per core)')
    .option('--progress <mode>', 'auto (bar on a terminal), bar, none', 'auto')
    .option('--json', 'print the summary as JSON')
    .action(async (out: string, o: { semantic: string; to: string; clusters?: string; iterations?: string; samplePerCluster?: string; seed?: string; threads?: string; progress: string; json?: boolean }) => {
      const threshold = Number(o.semantic);
      if (!(o.semantic.trim() !== '' && Number.isFinite(threshold) && threshold > 0 && threshold <= 1)) {
        throw new CapfiltError('CLI_USAGE', `--semantic must be a cosine in (0, 1], got "${o.semantic}"`);
      }
      if (!['auto', 'bar', 'none'].includes(o.progress)) throw new CapfiltError('CLI_USAGE', `--progress expects auto, bar or none, got "${o.progress}"`);
      const bar = phaseBar(o.progress);
      let summary;
      try {
        summary = await dedup(out, o.to, {
          threshold,
          clusters: int('--clusters', o.clusters, 1, 10_000_000),
          iterations: int('--iterations', o.iterations, 1, 1000),
          samplePerCluster: int('--sample-per-cluster', o.samplePerCluster, 1, 100_000),
          seed: int('--seed', o.seed, 0, 2 ** 32 - 1),
          threads: int('--threads', o.threads, 0, 1024),
          progress: bar.progress,
        });
      } finally {
        bar.stop();
      }
      if (o.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
      else {
        process.stdout.write(
          `dedup ${out} → ${o.to}: ${summary.shards} shards, ${summary.rows} rows, ${summary.embedded} embedded (${summary.dim}-d)${summary.keptWithoutEmbedding ? `, ${summary.keptWithoutEmbedding} kept rows without an embedding left as they were` : ''} in ${summary.clusters} clusters: ${summary.nearDuplicates} near-duplicates at cosine ≥ ${summary.threshold} filtered; kept ${summary.kept}, filtered ${summary.filtered}, failed ${summary.failed}\n`,
        );
      }
    });
}
