import type { Command } from 'commander';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../config/load.ts';
import { configSchema, type CapfiltConfig } from '../config/schema.ts';
import { CapfiltError } from '../core/errors.ts';
import { MemoryDuplicateIndex } from '../io/duplicates.ts';
import { RETRYABLE_REASONS, findRetryShards, mergeRetriedShard } from '../run/retry.ts';
import { readRunJson } from '../io/writers/run-json.ts';
import { finalizeRecords } from '../pipeline/decisions.ts';
import { closeDownloadResources, downloadShard } from '../pipeline/stages/download.ts';
import { FsStagingStore } from '../pipeline/staging/fs.ts';
import type { StageContext } from '../pipeline/stages/types.ts';
import type { ShardState } from '../core/shard.ts';
import { logger } from '../core/logger.ts';

/**
 * `capfilt retry-failed <out>`: re-downloads only the rows of a finished run that failed for a
 * transient reason and merges them into their shards. Rows that now download go through the
 * run's own model stages (from run.json's config), in this process; everything else in the
 * shard — other rows, their images and scores — is kept as written.
 */
async function runConfig(out: string): Promise<CapfiltConfig> {
  const run = await readRunJson(out);
  if (!run?.config) return loadConfig({ overrides: [{ path: 'output.dir', value: out, source: 'retry-failed' }] }).config;
  const parsed = configSchema.safeParse(run.config);
  if (!parsed.success) throw new CapfiltError('CONFIG_INVALID', `${out}/run.json: its config no longer validates: ${parsed.error.issues[0]?.message}`, { dir: out });
  return { ...parsed.data, output: { ...parsed.data.output, dir: out } };
}

export function register(program: Command): void {
  program
    .command('retry-failed')
    .description('re-download only the rows of a finished run that failed to download, and merge them into its shards')
    .argument('<out>', 'output folder of a finished run')
    .option('--reasons <codes>', `comma-separated reason codes to retry (default ${RETRYABLE_REASONS.join(',')})`)
    .option('--dry-run', 'only count the rows that would be retried')
    .option('--json', 'print the summary as JSON')
    .action(async (out: string, o: { reasons?: string; dryRun?: boolean; json?: boolean }) => {
      const reasons = o.reasons ? o.reasons.split(',').map((s) => s.trim()).filter(Boolean) : RETRYABLE_REASONS;
      const config = await runConfig(out);
      const plan = await findRetryShards(out, reasons);
      const summary = { out, reasons, shards: plan.shards.length, retried: 0, recovered: 0, stillFailed: {} as Record<string, number> };
      for (const s of plan.shards) summary.retried += s.retry.length;
      if (!o.dryRun && summary.retried > 0) {
        const log = logger().child({ cmd: 'retry-failed' });
        const staging = new FsStagingStore(await mkdtemp(join(tmpdir(), 'capfilt-retry-')));
        const duplicateIndex = new MemoryDuplicateIndex();
        for (const [sha, key] of plan.knownImages) await duplicateIndex.claim(sha, key);
        const ctx: StageContext = { config, staging, log, signal: new AbortController().signal };
        const stages = config.pipeline.stages;
        const { ModelCache } = await import('../workers/models.ts');
        const models = new ModelCache({ device: config.models.device, threads: config.models.threads, precision: config.models.precision }, log);
        try {
          for (const [i, s] of plan.shards.entries()) {
            const state: ShardState = {
              shard: { runId: 'retry', shardId: `s${i}`, number: Number(s.name), outputName: s.name, inputFile: '', indexInFile: 0, rowStart: 0, rowCount: s.retry.length },
              records: s.retry,
              stagesDone: [],
              timings: {},
            };
            if (stages.includes('download')) await downloadShard(state, { ...ctx, duplicateIndex });
            const downloaded = s.retry.some((r) => r.status === 'pending' && r.image);
            if (downloaded && stages.includes('caption')) {
              const { captionShard } = await import('../pipeline/stages/caption.ts');
              await captionShard(state, { ...ctx, captioner: await models.captioner(config.models.captioner) });
            }
            if (downloaded && stages.includes('filter')) {
              const { filterShard } = await import('../pipeline/stages/filter.ts');
              await filterShard(state, { ...ctx, filter: await models.filter(config.models.filter) });
            }
            finalizeRecords(s.retry, config.filter.selection);
            await mergeRetriedShard(out, s, { get: (ref) => staging.getBlob(ref) });
            await staging.deleteShard('retry', `s${i}`);
            for (const r of s.retry) {
              if (r.status === 'failed') summary.stillFailed[r.reason ?? 'UNKNOWN'] = (summary.stillFailed[r.reason ?? 'UNKNOWN'] ?? 0) + 1;
              else summary.recovered++;
            }
          }
        } finally {
          await models.close();
          await closeDownloadResources();
          await rm(staging.dir, { recursive: true, force: true });
        }
      }
      if (o.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
      else {
        const failed = Object.entries(summary.stillFailed).map(([k, v]) => `${k} ${v}`).join(', ');
        process.stdout.write(
          `retry-failed ${out}: ${summary.retried} rows in ${summary.shards} shards${o.dryRun ? ' would be retried' : `: ${summary.recovered} recovered${failed ? `, still failed: ${failed}` : ''}`}\n`,
        );
      }
    });
}
