import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { loadConfig } from '../config/load.ts';
import { configSchema, type CapfiltConfig } from '../config/schema.ts';
import { CapfiltError, codesOfKind } from '../core/errors.ts';
import type { RowRecord } from '../core/records.ts';
import type { ShardState } from '../core/shard.ts';
import { MemoryDuplicateIndex } from '../io/duplicates.ts';
import { storeOf, type ObjectStore } from '../io/storage/object-store.ts';
import { openOutput, type OutputLocation } from '../io/storage/output.ts';
import { readRunJson, writeRunJson } from '../io/writers/run-json.ts';
import { listShards, shardPaths, writeShardFiles, type ImageSource } from '../io/writers/shard.ts';
import { readEmbeddings } from '../io/writers/embeddings.ts';
import { readShardParquet } from '../io/writers/shard-parquet.ts';
import type { ShardStats } from '../io/writers/stats.ts';
import { finalizeRecords } from '../pipeline/decisions.ts';
import { FsStagingStore } from '../pipeline/staging/fs.ts';
import { STAGE_TABLE, checkChain, outputColumns, type StageTable } from '../pipeline/stages/table.ts';
import { refreshReport } from '../report/index.ts';
import { StageRegistry } from '../workers/stages.ts';
import { runtimeSetting } from '../models/runtime/precision.ts';
import { MemoryTopFractionSketch } from '../pipeline/top-fraction.ts';
import { defaultS3Options, finishTopFraction, shardImages, type TopFractionSummary } from './rethreshold.ts';

/**
 * `capfilt retry-failed <out>` as a library call: find the rows of a finished run that failed
 * for a transient reason, run them again through the run's own stages (from run.json's config),
 * in this process, through the same stage table and registry the workers use, and merge them
 * back into their shards (the other rows, their images and scores, are kept as written):
 *
 *   findRetryShards(out, reasons)          every shard with rows to retry, those rows reset to pending
 *   for each shard: the run's stages up to write (StageRegistry, as a worker runs them; stages
 *     after the download run only while some row is still pending), finalizeRecords, then
 *   mergeRetriedShard(out, shard, staging) rewrites NNNNN.* atomically instead of the write stage
 *   with clip.topFraction: the run's final pass again (finishTopFraction), as recovered rows add
 *     texts to the ranking (their own shard-level decision used only the retried rows' scores)
 */

/** The default reasons: every transient code of the catalogue (src/core/errors.ts). */
export const RETRYABLE_REASONS: string[] = codesOfKind('transient');

export interface RetryShard {
  /** Output base name ("00042"). */
  name: string;
  /** Every record of the shard as written; `retry` are the same objects, reset to pending. */
  records: RowRecord[];
  retry: RowRecord[];
}

export interface RetryPlan {
  shards: RetryShard[];
  /** sha256 and key of every image already in the run, to seed duplicate detection for retried rows. */
  knownImages: Array<[string, string]>;
}

export async function findRetryShards(outDir: string | ObjectStore, reasons: string[] = RETRYABLE_REASONS, table: StageTable = STAGE_TABLE): Promise<RetryPlan> {
  const store = storeOf(outDir);
  const wanted = new Set(reasons);
  const out: RetryShard[] = [];
  const knownImages: Array<[string, string]> = [];
  for (const name of await listShards(store)) {
    const records = await readShardParquet({ store, name: `${name}.parquet` }, outputColumns(table));
    for (const r of records) if (r.image) knownImages.push([r.image.sha256, r.key]);
    const retry = records.filter((r) => r.status === 'failed' && r.reason !== null && wanted.has(r.reason) && r.url !== null);
    for (const r of retry) {
      r.status = 'pending';
      r.reason = null;
      r.reasonDetail = null;
      r.image = null;
      r.fetch = null;
      r.captions = [];
      r.scores = [];
      r.selected = null;
    }
    if (retry.length) out.push({ name, records, retry });
  }
  return { shards: out, knownImages };
}

/**
 * Rewrites a shard with its retried rows (now final). Images of untouched rows come from the
 * shard's own tars (`tar:` refs); new images from `images` (the staging store the stages used).
 */
export async function mergeRetriedShard(outDir: string | OutputLocation, shard: RetryShard, images: ImageSource, table: StageTable = STAGE_TABLE): Promise<ShardStats> {
  const output = typeof outDir === 'string' ? openOutput(outDir, defaultS3Options()) : outDir;
  return output.withShard(shard.name, async (dir) => {
    const old = await shardImages(dir, shard.name);
    const source: ImageSource = { get: (ref) => (ref.startsWith('tar:') ? old.get(ref) : images.get(ref)) };
    // Untouched kept rows come back from the parquet without their embeddings: the shard's saved
    // triple supplies them, the retried rows bring their own.
    const carriedEmbeddings = await readEmbeddings(dir, shard.name, { text: true });
    const { stats } = await writeShardFiles(shard.records, { outDir: dir, name: shard.name, images: source, startTime: Date.now(), columns: outputColumns(table), carriedEmbeddings });
    return stats;
  }, { fetch: true });
}

/**
 * The run's config from its run.json (the defaults when there is none), writing to `out`.
 * Sections added to capfilt after the run was made (e.g. `s3`) take their defaults.
 */
export async function runConfigOf(out: string | OutputLocation, s3: CapfiltConfig['s3'] = defaultS3Options()): Promise<CapfiltConfig> {
  const output = typeof out === 'string' ? openOutput(out, s3) : out;
  const run = await readRunJson(output.store);
  const defaults = loadConfig({ overrides: [{ path: 'output.dir', value: output.location, source: 'retry-failed' }] }).config;
  if (!run?.config) return { ...defaults, s3 };
  const parsed = configSchema.safeParse({ ...defaults, ...(run.config as object) });
  if (!parsed.success) throw new CapfiltError('CONFIG_INVALID', `${output.store.locate('run.json')}: its config no longer validates: ${parsed.error.issues[0]?.message}`, { dir: output.location });
  // The S3 endpoint and options of the host retrying, not of the one that ran.
  return { ...parsed.data, output: { ...parsed.data.output, dir: output.location }, s3 };
}

export interface RetryFailedOptions {
  /** The output folder or s3:// prefix. */
  out: string;
  /** How to reach an s3:// output (default config/default.yaml's s3 section). */
  s3?: CapfiltConfig['s3'];
  /** Reason codes to retry (default RETRYABLE_REASONS). */
  reasons?: string[];
  /** Only count the rows that would be retried. */
  dryRun?: boolean;
  log: Logger;
  /** The run's config (default: from run.json). */
  config?: CapfiltConfig;
  /** The stage table the run was made with (default: the built-in one). */
  table?: StageTable;
}

export interface RetryFailedSummary {
  out: string;
  reasons: string[];
  shards: number;
  retried: number;
  recovered: number;
  stillFailed: Record<string, number>;
  /** With clip.topFraction and recovered rows: the final pass over the whole output again. */
  topFraction?: TopFractionSummary;
  /** report.html rebuilt over the merged shards (null, with the reason, when it could not be). */
  report?: { file: string | null; error?: string };
}

export async function retryFailed(o: RetryFailedOptions): Promise<RetryFailedSummary> {
  const { out, log } = o;
  const reasons = o.reasons ?? RETRYABLE_REASONS;
  const table = o.table ?? STAGE_TABLE;
  const s3 = o.s3 ?? o.config?.s3 ?? defaultS3Options();
  const output = openOutput(out, s3);
  const config = o.config ?? (await runConfigOf(output, s3));
  const stages: readonly string[] = config.pipeline.stages;
  checkChain(stages, table);
  const plan = await findRetryShards(output.store, reasons, table);
  const summary: RetryFailedSummary = { out, reasons, shards: plan.shards.length, retried: 0, recovered: 0, stillFailed: {} };
  for (const s of plan.shards) summary.retried += s.retry.length;
  if (o.dryRun || summary.retried === 0) return summary;

  const staging = new FsStagingStore(await mkdtemp(join(tmpdir(), 'capfilt-retry-')));
  // Retried rows are checked against every image the run already holds.
  const duplicateIndex = new MemoryDuplicateIndex();
  const sketch = new MemoryTopFractionSketch();
  for (const [sha, key] of plan.knownImages) await duplicateIndex.claim(sha, key);
  const registry = new StageRegistry({
    // The retried stages run one after another: one model at a time has the cores.
    runtime: runtimeSetting(config.models, 1),
    log,
    table,
    duplicateIndex: () => duplicateIndex,
    topFractionSketch: () => sketch,
  });
  const signal = new AbortController().signal;
  // Final statuses of the recovered rows (and kept rows that brought embeddings), for run.json.
  const recoveredAs = { kept: 0, filtered: 0, embeddings: 0 };
  try {
    for (const [i, s] of plan.shards.entries()) {
      const state: ShardState = {
        shard: { runId: 'retry', shardId: `s${i}`, number: Number(s.name), outputName: s.name, inputFile: '', indexInFile: 0, rowStart: 0, rowCount: s.retry.length },
        records: s.retry,
        stagesDone: [],
        timings: {},
      };
      // The run's chain up to its write stage, whose place mergeRetriedShard takes. A stage after
      // the first runs only while a row is still pending (no model is loaded for nothing).
      for (const [k, stage] of stages.entries()) {
        if (stage === 'write') break;
        if (k > 0 && !s.retry.some((r) => r.status === 'pending')) break;
        const fn = await registry.get(stage, config);
        const t0 = performance.now();
        await fn(state, { config, staging, log, signal });
        state.timings[stage] = Math.round(performance.now() - t0);
        state.stagesDone.push(stage);
      }
      finalizeRecords(s.retry, config.filter.selection);
      await mergeRetriedShard(output, s, { get: (ref) => staging.getBlob(ref) }, table);
      await staging.deleteShard('retry', `s${i}`);
      for (const r of s.retry) {
        if (r.status === 'failed') summary.stillFailed[r.reason ?? 'UNKNOWN'] = (summary.stillFailed[r.reason ?? 'UNKNOWN'] ?? 0) + 1;
        else {
          summary.recovered++;
          recoveredAs[r.status as 'kept' | 'filtered']++;
          if (r.status === 'kept' && r.clipEmbedding) recoveredAs.embeddings++;
        }
      }
    }
  } finally {
    await registry.close();
    await rm(staging.dir, { recursive: true, force: true });
  }
  if (config.clip.topFraction !== null && summary.recovered > 0) {
    const pass = await finishTopFraction(output, {
      itmThreshold: config.filter.itmThreshold, itcThreshold: config.filter.itcThreshold, selection: config.filter.selection,
      keepTop: config.caption.keepTop, selectBy: config.caption.selectBy, clipMinScore: config.clip.minScore, clipTopFraction: config.clip.topFraction,
    }, outputColumns(table));
    summary.topFraction = pass.topFraction;
    await recordRetry(output.store, summary, { kept: pass.kept, filtered: pass.filtered, failed: pass.failed });
  } else await recordRetry(output.store, summary, recoveredAs);
  summary.report = await refreshReport(output);
  return summary;
}

/**
 * run.json after a retry: its totals moved by what the retry changed (the recovered rows' new
 * statuses, or with a top-fraction pass the pass's totals over every row) and the retry appended
 * to `retryFailed`. A run.json without totals keeps none; an output without run.json gets none.
 */
async function recordRetry(store: ObjectStore, s: RetryFailedSummary, change: { kept: number; filtered: number; embeddings: number } | { kept: number; filtered: number; failed: number }): Promise<void> {
  const run = await readRunJson(store);
  if (!run) return;
  const next: Record<string, unknown> = { ...run };
  const num = (k: string) => (typeof run[k] === 'number' ? (run[k] as number) : null);
  if ('failed' in change) {
    for (const k of ['kept', 'filtered', 'failed'] as const) if (num(k) !== null) next[k] = change[k];
    if (s.topFraction) next.clipTopFraction = s.topFraction;
  } else {
    if (num('kept') !== null) next.kept = num('kept')! + change.kept;
    if (num('filtered') !== null) next.filtered = num('filtered')! + change.filtered;
    if (num('failed') !== null) next.failed = num('failed')! - s.recovered;
    if (num('embeddingsWritten') !== null) next.embeddingsWritten = num('embeddingsWritten')! + change.embeddings;
  }
  const earlier = Array.isArray(run.retryFailed) ? run.retryFailed : [];
  next.retryFailed = [...earlier, { at: new Date().toISOString(), reasons: s.reasons, shards: s.shards, retried: s.retried, recovered: s.recovered, stillFailed: s.stillFailed }];
  await writeRunJson(store, next);
}
