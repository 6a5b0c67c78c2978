import { access, mkdir, readdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { isS3Url } from '../io/storage/s3-url.ts';
import { CapfiltError } from '../core/errors.ts';
import type { RowRecord } from '../core/records.ts';
import { readEmbeddings, type ShardEmbeddings } from '../io/writers/embeddings.ts';
import { readRunJson, writeRunJson } from '../io/writers/run-json.ts';
import { listShards, shardPaths, writeShardFiles } from '../io/writers/shard.ts';
import { readShardParquet } from '../io/writers/shard-parquet.ts';
import { InnerProducts } from '../models/runtime/inner-products.ts';
import type { ProgressFn } from '../pipeline/dedup/kmeans.ts';
import { semanticDedup } from '../pipeline/dedup/semantic.ts';
import { vectorSet } from '../pipeline/dedup/vectors.ts';
import { outputColumns } from '../pipeline/stages/table.ts';
import { shardImages } from './rethreshold.ts';

/**
 * `capfilt dedup`: SemDeDup over the image embeddings a run saved (--save-embeddings), into a new
 * output folder; the source is only read. Every kept row with an embedding takes part
 * (src/pipeline/dedup/semantic.ts says which row of a group stays); a dropped row becomes
 * `filtered` with reason NEAR_DUPLICATE and `near_duplicate_of`/`near_duplicate_cosine` (the
 * parquet and its key.json in filtered/NNNNN.tar). Every other row — filtered, failed, or kept
 * without an embedding — is written as it was. The new folder's embeddings hold the rows that
 * stay kept, in the same layout, so an index built from it has no near-duplicates.
 */
export interface DedupOptions {
  /** Cosine at or above which two images are near-duplicates, in (0, 1]. */
  threshold: number;
  /** k-means clusters; default ⌈√rows⌉ (balances points × clusters against the pairs inside clusters). */
  clusters?: number;
  iterations?: number;
  samplePerCluster?: number;
  seed?: number;
  /** ORT intra-op threads (0: one per core). */
  threads?: number;
  progress?: ProgressFn;
}

export interface DedupSummary {
  from: string;
  to: string;
  shards: number;
  rows: number;
  /** Kept rows with an embedding: the rows compared. */
  embedded: number;
  /**
   * Kept rows without one, written as they were: rows a rethreshold kept that the run had
   * filtered (a run saves kept rows' embeddings only).
   */
  keptWithoutEmbedding: number;
  nearDuplicates: number;
  kept: number;
  filtered: number;
  failed: number;
  threshold: number;
  clusters: number;
  dim: number;
  kmeansIterations: number;
  largestCluster: number;
  timings_ms: { read: number; kmeans: number; pairwise: number; write: number };
}

export const DEDUP_DEFAULTS = { iterations: 10, samplePerCluster: 64, seed: 0 } as const;

const exists = (f: string) => access(f).then(() => true, () => false);

function checkThreshold(t: number): void {
  if (!(Number.isFinite(t) && t > 0 && t <= 1)) throw new CapfiltError('CLI_USAGE', `--semantic must be a cosine in (0, 1], got ${t}`);
}

interface LoadedShard {
  name: string;
  keys: string[];
  /** Index of the shard's first row in the vector set. */
  offset: number;
}

export async function dedup(from: string, to: string, o: DedupOptions): Promise<DedupSummary> {
  checkThreshold(o.threshold);
  // k-means over every embedding wants them in one process's memory from local files; an S3
  // output is copied down first (e.g. `aws s3 sync`), deduplicated, and synced back.
  for (const [flag, dir] of [['OUT', from], ['--to', to]] as const) {
    if (isS3Url(dir)) throw new CapfiltError('CLI_USAGE', `dedup reads and writes local folders, ${flag} is ${dir}: copy the output down first (aws s3 sync ${dir} ./out), then dedup ./out`, { dir });
  }
  if (resolve(from) === resolve(to)) throw new CapfiltError('CLI_USAGE', `dedup writes a new output folder: --to must differ from ${from}`);
  const shards = await listShards(from);
  if (shards.length === 0) throw new CapfiltError('OUTPUT_SHARD_INVALID', `${from}: no finished shards (NNNNN.parquet) to deduplicate`, { dir: from });
  if (!(await exists(join(from, 'embeddings')))) {
    throw new CapfiltError('EMBEDDINGS_MISSING', `${from} has no embeddings/ folder: dedup compares the image embeddings a run saves with --save-embeddings (clip.saveEmbeddings)`, { dir: from });
  }
  // --to is checked now and created only once the embeddings have been read and compared.
  const existing = (await readdir(to).catch(() => [] as string[])).filter((n) => /^\d+\.parquet$/.test(n) || n === 'run.json');
  if (existing.length) throw new CapfiltError('OUTPUT_EXISTS', `${to} already holds output (${existing.slice(0, 3).join(', ')}); choose an empty folder`, { dir: to });
  const columns = outputColumns();
  const t0 = performance.now();

  // Pass 1: every shard's image embeddings into one matrix, checked against the shard's kept rows.
  const loaded: LoadedShard[] = [];
  const parts: ShardEmbeddings[] = [];
  let dim = 0;
  let dimFrom = '';
  let count = 0;
  let rows = 0;
  let keptTotal = 0;
  for (const name of shards) {
    const records = await readShardParquet(shardPaths(from, name).parquet, columns);
    rows += records.length;
    const kept = new Set(records.filter((r) => r.status === 'kept').map((r) => r.key));
    const e = await readEmbeddings(from, name);
    keptTotal += kept.size;
    if (!e) continue;
    if (e.image.dtype !== 'float16') throw new CapfiltError('EMBEDDINGS_INVALID', `${from}: shard ${name}'s image embeddings are ${e.image.dtype}, capfilt writes float16`, { dir: from, shard: name });
    if (dim === 0) {
      dim = e.image.dim;
      dimFrom = name;
    } else if (e.image.dim !== dim) {
      throw new CapfiltError('EMBEDDINGS_DIMS_MISMATCH', `${from}: shard ${name}'s image embeddings have ${e.image.dim} dimensions, shard ${dimFrom}'s ${dim}`, { dir: from, shard: name, dim: e.image.dim, expected: dim });
    }
    const stray = e.keys.find((k) => !kept.has(k));
    if (stray !== undefined) throw new CapfiltError('EMBEDDINGS_INVALID', `${from}: shard ${name}'s embeddings list ${stray}, which is not a kept row of ${name}.parquet`, { dir: from, shard: name, key: stray });
    if (new Set(e.keys).size !== e.keys.length) throw new CapfiltError('EMBEDDINGS_INVALID', `${from}: shard ${name}'s embeddings metadata lists a key twice`, { dir: from, shard: name });
    loaded.push({ name, keys: e.keys, offset: count });
    parts.push(e);
    count += e.keys.length;
  }
  if (count === 0) throw new CapfiltError('EMBEDDINGS_MISSING', `${from}: no shard holds embeddings of a kept row`, { dir: from });
  const half = new Uint16Array(count * dim);
  parts.forEach((p, i) => half.set(p.image.data as Uint16Array, loaded[i].offset * dim));
  parts.length = 0;
  const t1 = performance.now();

  const ip = await InnerProducts.create(o.threads ?? 0);
  let result;
  try {
    result = await semanticDedup(
      vectorSet(half, count, dim),
      ip,
      {
        threshold: o.threshold,
        clusters: o.clusters ?? Math.ceil(Math.sqrt(count)),
        iterations: o.iterations ?? DEDUP_DEFAULTS.iterations,
        samplePerCluster: o.samplePerCluster ?? DEDUP_DEFAULTS.samplePerCluster,
        seed: o.seed ?? DEDUP_DEFAULTS.seed,
      },
      o.progress,
    );
  } finally {
    await ip.release();
  }
  const t2 = performance.now();

  // Pass 2: each shard rewritten with its dropped rows filtered and the rest as they were.
  const keyOf = (index: number) => {
    let lo = 0;
    let hi = loaded.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (loaded[mid].offset <= index) lo = mid;
      else hi = mid - 1;
    }
    return loaded[lo].keys[index - loaded[lo].offset];
  };
  const summary: DedupSummary = {
    from,
    to,
    shards: shards.length,
    rows,
    embedded: count,
    keptWithoutEmbedding: keptTotal - count,
    nearDuplicates: result.dropped,
    kept: 0,
    filtered: 0,
    failed: 0,
    threshold: o.threshold,
    clusters: result.kmeans.clusters,
    dim,
    kmeansIterations: result.kmeans.iterations,
    largestCluster: result.largestCluster,
    timings_ms: { read: Math.round(t1 - t0), kmeans: result.timings_ms.kmeans, pairwise: result.timings_ms.pairwise, write: 0 },
  };
  await mkdir(to, { recursive: true });
  const byName = new Map(loaded.map((l) => [l.name, l]));
  let written = 0;
  for (const name of shards) {
    const records = await readShardParquet(shardPaths(from, name).parquet, columns);
    const l = byName.get(name);
    // The shard's triple, for the rows that stay kept (writeEmbeddings takes them from it).
    const carried = l ? await readEmbeddings(from, name, { text: true }) : null;
    if (l) {
      const at = new Map(l.keys.map((k, i) => [k, i]));
      for (const r of records) {
        const i = at.get(r.key);
        if (i === undefined) continue;
        const g = l.offset + i;
        const of = result.duplicateOf[g];
        if (of >= 0) markNearDuplicate(r, keyOf(of), result.cosine[g]);
      }
    }
    for (const r of records) summary[r.status as 'kept' | 'filtered' | 'failed']++;
    const images = await shardImages(from, name);
    await writeShardFiles(records, { outDir: to, name, images, startTime: Date.now(), columns, carriedEmbeddings: carried });
    written += records.length;
    o.progress?.('write', written, rows);
  }
  summary.timings_ms.write = Math.round(performance.now() - t2);
  const run = (await readRunJson(from)) ?? {};
  const { progress: _progress, ...options } = o;
  await writeRunJson(to, {
    ...run,
    dedup: {
      from: resolve(from),
      at: new Date().toISOString(),
      ...options,
      clusters: summary.clusters,
      dim,
      embedded: count,
      keptWithoutEmbedding: summary.keptWithoutEmbedding,
      nearDuplicates: result.dropped,
    },
    rows: summary.rows,
    kept: summary.kept,
    filtered: summary.filtered,
    failed: summary.failed,
  });
  return summary;
}

function markNearDuplicate(r: RowRecord, of: string, cosine: number): void {
  r.status = 'filtered';
  r.reason = 'NEAR_DUPLICATE';
  r.reasonDetail = `image embedding cosine ${cosine.toFixed(4)} to kept row ${of}`;
  r.selected = null;
  r.nearDuplicate = { of, cosine: Number(cosine.toFixed(6)) };
}
