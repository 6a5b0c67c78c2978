import { access, mkdir, readdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { CapfiltError } from '../../core/errors.ts';
import type { RowRecord } from '../../core/records.ts';
import { storeOf, type ObjectStore } from '../storage/object-store.ts';
import { writeFileAtomic } from './atomic.ts';
import type { OutputColumn } from './columns.ts';
import { writeEmbeddings, type ShardEmbeddings } from './embeddings.ts';
import { writeShardParquet } from './shard-parquet.ts';
import { shardStats, type ShardStats } from './stats.ts';
import { writeTarAtomic, type TarSample } from './tar.ts';

/** Where the writer reads staged image bytes from (the pipeline's staging store, or an old tar). */
export interface ImageSource {
  get(ref: string): Promise<Uint8Array>;
}

export interface WriteShardOptions {
  outDir: string;
  /** Output base name, e.g. "00042". */
  name: string;
  images: ImageSource;
  startTime: number;
  timings?: Record<string, number | undefined>;
  /**
   * Also write the images of filtered rows to `filtered/NNNNN.tar`, so that `rethreshold` can
   * later keep rows a stricter filter dropped. Default true; the images are the small resized ones.
   * A subfolder, so that loaders globbing `<out>/*.tar` read only the clean dataset.
   */
  keepFilteredImages?: boolean;
  /** The parquet's stage columns (the stage table's `outputColumns`); default the built-in record columns. */
  columns?: readonly OutputColumn[];
  /**
   * Whether the source holds a row's image; a filtered row whose image it lacks is written to the
   * parquet only (rethreshold from an output written without filtered images). Default: all held.
   */
  hasImage?(ref: string): boolean;
  /** The run's final top-fraction pass wrote this shard: the fraction and the rows it moved (for _stats.json). */
  topFraction?: { fraction: number; rowsMoved: number };
  /** The shard's saved embeddings before a rewrite, for its kept rows read back from a parquet (writeEmbeddings). */
  carriedEmbeddings?: ShardEmbeddings | null;
}

export interface ShardPaths {
  tar: string;
  filteredTar: string;
  parquet: string;
  stats: string;
}

export function shardPaths(outDir: string, name: string): ShardPaths {
  return {
    tar: join(outDir, `${name}.tar`),
    filteredTar: join(outDir, 'filtered', `${name}.tar`),
    parquet: join(outDir, `${name}.parquet`),
    stats: join(outDir, `${name}_stats.json`),
  };
}

/** A shard is done when its parquet exists: the parquet is renamed into place last. */
export async function shardDone(outDir: string, name: string): Promise<boolean> {
  return access(shardPaths(outDir, name).parquet).then(
    () => true,
    () => false,
  );
}

/** Names of the finished shards of an output folder (or S3 prefix), sorted. */
export async function listShards(outDir: string | ObjectStore): Promise<string[]> {
  const store = storeOf(outDir);
  let names: string[];
  try {
    if (store.kind === 'fs') names = await readdir(store.location);
    else names = (await store.list()).map((o) => o.name).filter((n) => !n.includes('/'));
  } catch (e) {
    throw new CapfiltError('OUTPUT_SHARD_INVALID', `${store.location}: ${(e as Error).message}`, { dir: store.location }, { cause: e });
  }
  return names
    .map((n) => /^(\d+)\.parquet$/.exec(n)?.[1])
    .filter((n): n is string => n !== undefined)
    .sort();
}

function sample(r: RowRecord, bytes: Uint8Array): TarSample {
  const meta = {
    key: r.key,
    url: r.url,
    text: r.text,
    status: r.status,
    reason: r.reason,
    trusted: r.trusted,
    selected: r.selected,
    captions: r.captions,
    scores: r.scores,
    ...(r.labels ? { labels: r.labels } : {}),
    width: r.image!.width,
    height: r.image!.height,
    original_width: r.image!.originalWidth,
    original_height: r.image!.originalHeight,
    sha256: r.image!.sha256,
    duplicate_of: r.image!.duplicateOf ?? null,
    ...(r.nearDuplicate ? { near_duplicate_of: r.nearDuplicate.of, near_duplicate_cosine: r.nearDuplicate.cosine } : {}),
    extra: r.extra,
  };
  return {
    key: r.key,
    files: [
      { ext: r.image!.format, data: bytes },
      { ext: 'txt', data: r.selected ?? '' },
      { ext: 'json', data: JSON.stringify(meta) },
    ],
  };
}

async function* samples(records: RowRecord[], images: ImageSource): AsyncGenerator<TarSample> {
  for (const r of records) yield sample(r, await images.get(r.image!.ref));
}

/**
 * Writes NNNNN.tar (kept rows), filtered/NNNNN.tar (filtered rows with an image, optional),
 * NNNNN_stats.json and NNNNN.parquet (every row), each atomically, the parquet last. Every
 * record must be final (kept/filtered/failed) and every kept record must have an image.
 */
export async function writeShardFiles(records: RowRecord[], o: WriteShardOptions): Promise<{ paths: ShardPaths; stats: ShardStats }> {
  for (const r of records) {
    if (r.status === 'pending') throw new CapfiltError('OUTPUT_WRITE_FAILED', `shard ${o.name}: row ${r.key} is still pending; every row needs a final status before writing`, { key: r.key });
    if (r.status === 'kept' && !r.image) throw new CapfiltError('OUTPUT_WRITE_FAILED', `shard ${o.name}: kept row ${r.key} has no image`, { key: r.key });
  }
  await mkdir(o.outDir, { recursive: true });
  const paths = shardPaths(o.outDir, o.name);
  await writeTarAtomic(paths.tar, samples(records.filter((r) => r.status === 'kept'), o.images));
  const filtered = records.filter((r) => r.status === 'filtered' && r.image && (o.hasImage?.(r.image.ref) ?? true));
  if ((o.keepFilteredImages ?? true) && filtered.length) {
    await mkdir(dirname(paths.filteredTar), { recursive: true });
    await writeTarAtomic(paths.filteredTar, samples(filtered, o.images));
  }
  else await rm(paths.filteredTar, { force: true });
  await writeEmbeddings(o.outDir, o.name, records, o.carriedEmbeddings ?? null);
  return writeShardTable(records, o);
}

/**
 * Writes only NNNNN_stats.json and NNNNN.parquet, the parquet last: for a shard rewritten in
 * place whose tars stay as they are (no row's status, selected caption or key.json changed).
 */
export async function writeShardTable(records: RowRecord[], o: Omit<WriteShardOptions, 'images' | 'keepFilteredImages'> & { endTime?: number }): Promise<{ paths: ShardPaths; stats: ShardStats }> {
  const paths = shardPaths(o.outDir, o.name);
  const stats = shardStats(o.name, records, { startTime: o.startTime, endTime: o.endTime ?? Date.now(), timings: o.timings, topFraction: o.topFraction });
  await writeFileAtomic(paths.stats, `${JSON.stringify(stats, null, 2)}\n`);
  await writeShardParquet(paths.parquet, records, o.columns);
  return { paths, stats };
}

/**
 * A tar of the images (and texts) of every given row that has one. Rewriting a shard in place
 * writes one as filtered/NNNNN.tar first, so that a crash between the two tars' renames cannot
 * lose an image that moves between them.
 */
export async function writeImagesTar(path: string, records: RowRecord[], images: ImageSource): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeTarAtomic(path, samples(records.filter((r) => r.image), images));
}
