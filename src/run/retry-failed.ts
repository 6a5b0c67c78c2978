import type { RowRecord } from '../core/records.ts';
import { shardImages } from './rethreshold.ts';
import { listShards, shardPaths, writeShardFiles, type ImageSource } from '../io/writers/shard.ts';
import { readShardParquet } from '../io/writers/shard-parquet.ts';
import type { ShardStats } from '../io/writers/stats.ts';

/**
 * "Retry the failures only": find the rows of a finished run that failed to download for a
 * transient reason, let the caller run them through the stages again, and merge them back into
 * their shards (the other rows, their images and scores, are kept as written).
 *
 *   const { shards } = await findRetryShards(out, reasons);
 *   for (const s of shards) {
 *     await process(s.retry);                          // download → caption → filter → finalize
 *     await mergeRetriedShard(out, s, stagingImages);  // rewrites NNNNN.* atomically
 *   }
 */
export const RETRYABLE_REASONS = ['DOWNLOAD_TIMEOUT', 'DOWNLOAD_NETWORK', 'DOWNLOAD_HTTP_STATUS', 'DOWNLOAD_DNS_FAILED', 'DOWNLOAD_ABORTED', 'STAGE_FAILED'];

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

export async function findRetryShards(outDir: string, reasons: string[] = RETRYABLE_REASONS): Promise<RetryPlan> {
  const wanted = new Set(reasons);
  const out: RetryShard[] = [];
  const knownImages: Array<[string, string]> = [];
  for (const name of await listShards(outDir)) {
    const records = await readShardParquet(shardPaths(outDir, name).parquet);
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
export async function mergeRetriedShard(outDir: string, shard: RetryShard, images: ImageSource): Promise<ShardStats> {
  const old = await shardImages(outDir, shard.name);
  const source: ImageSource = { get: (ref) => (ref.startsWith('tar:') ? old.get(ref) : images.get(ref)) };
  const { stats } = await writeShardFiles(shard.records, { outDir, name: shard.name, images: source, startTime: Date.now() });
  return stats;
}
