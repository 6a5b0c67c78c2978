import { access, readFile } from 'node:fs/promises';
import { loadConfig } from '../config/load.ts';
import type { CapfiltConfig } from '../config/schema.ts';
import { CapfiltError } from '../core/errors.ts';
import type { ObjectStore } from '../io/storage/object-store.ts';
import { openOutput, type OutputLocation } from '../io/storage/output.ts';
import { decideRow, type FilterOptions } from '../pipeline/decisions.ts';
import type { RowRecord } from '../core/records.ts';
import { readRunJson, writeRunJson } from '../io/writers/run-json.ts';
import { listShards, shardPaths, writeImagesTar, writeShardFiles, writeShardTable, type ImageSource } from '../io/writers/shard.ts';
import type { OutputColumn } from '../io/writers/columns.ts';
import { exactTopThreshold, rankedScores } from '../pipeline/top-fraction.ts';
import { readShardParquet } from '../io/writers/shard-parquet.ts';
import { readTarEntries } from '../io/writers/tar.ts';
import { readEmbeddings } from '../io/writers/embeddings.ts';
import { outputColumns } from '../pipeline/stages/table.ts';
import { refreshReport } from '../report/index.ts';

/**
 * `rethreshold`: a new output folder with the filter decisions remade from the scores stored in
 * every shard parquet, by the same rules the filter stage uses (src/pipeline/decisions.ts) — no
 * model runs. Failed rows, trusted rows and rows of runs without a filter stage stay as they
 * were. Images are copied from the old shard's tars: kept rows from NNNNN.tar, filtered rows
 * from filtered/NNNNN.tar; a row that now passes but whose image was not kept (a shard written
 * without filtered images) is filtered with RETHRESHOLD_IMAGE_MISSING. Saved embeddings
 * (--save-embeddings) are carried for the rows kept now that had them; a row kept now but
 * filtered before has none (a run saves kept rows' embeddings only), so the summary counts it.
 *
 * The same machinery is the final pass of a run with `clip.topFraction` (`finishTopFraction`):
 * the exact threshold from every shard's stored CLIP scores, the rows re-decided with it, and the
 * shards rewritten in place, so rows move between out/ and out/filtered/.
 *
 * Either folder may be an s3:// prefix: each shard is then copied down to a scratch folder,
 * re-decided there, and its changed files uploaded whole, the parquet last (src/io/storage/output.ts).
 */
export interface RethresholdOptions {
  itmThreshold: number;
  itcThreshold: number | null;
  selection: FilterOptions['selection'];
  /** "Generate K, keep the top M by ITC"; null keeps every passing caption. */
  keepTop: number | null;
  /** The score ranking captions for keepTop (default itc). */
  selectBy?: FilterOptions['selectBy'];
  /** CLIP score threshold (null: no CLIP rule); applies to runs that stored CLIP scores. */
  clipMinScore?: number | null;
  /**
   * DataComp's rule: keep texts whose CLIP score is in the top fraction of every ranked text of
   * the output (src/pipeline/top-fraction.ts), threshold computed exactly from the stored scores
   * (null: no such rule).
   */
  clipTopFraction?: number | null;
}

/** What the top-fraction rule did: the exact threshold, what it ranked, and what moved. */
export interface TopFractionSummary {
  fraction: number;
  /** The ⌈f·N⌉-th highest CLIP score of the ranked texts (null when none was scored). */
  threshold: number | null;
  /** Texts ranked (N) and texts at or above the threshold. */
  texts: number;
  textsAtOrAbove: number;
  /** The provisional thresholds the run's shards were decided with while it streamed (null: none). */
  provisional: { min: number; max: number } | null;
  /** Rows the pass moved: filtered → kept, kept → filtered. */
  rowsMoved: { toKept: number; toFiltered: number };
  /** Shards whose tars were rewritten (the others had only their parquet and stats rewritten). */
  shardsRewritten: number;
}

export interface RethresholdSummary {
  from: string;
  to: string;
  shards: number;
  rows: number;
  kept: number;
  filtered: number;
  failed: number;
  /** Rows whose status or selected caption changed. */
  changed: number;
  /** With clipTopFraction: the exact threshold and what it moved. */
  topFraction?: TopFractionSummary;
  /** The new output's report.html (null, with the reason, when it could not be built). */
  report?: { file: string | null; error?: string };
  /**
   * With a source saved with --save-embeddings: rows of the new output whose embeddings were
   * carried over, and kept rows that have none (filtered in the source, whose embeddings a run
   * does not save; dedup leaves such rows as they are).
   */
  embeddings?: { carried: number; keptWithout: number };
}

/** The images of a written shard, addressed by the `tar:<key>` refs readShardParquet gives. */
export async function shardImages(outDir: string, name: string): Promise<ImageSource & { has(ref: string): boolean }> {
  const p = shardPaths(outDir, name);
  const entries = new Map<string, Buffer>();
  for (const tar of [p.tar, p.filteredTar]) {
    const present = await access(tar).then(() => true, () => false);
    if (present) for (const [k, v] of await readTarEntries(tar)) entries.set(k, v);
  }
  const byRef = (ref: string) => {
    const key = ref.replace(/^tar:/, '');
    for (const ext of ['jpg', 'webp', 'png']) {
      const b = entries.get(`${key}.${ext}`);
      if (b) return b;
    }
    return undefined;
  };
  return {
    has: (ref) => byRef(ref) !== undefined,
    get: async (ref) => {
      const b = byRef(ref);
      if (!b) throw new CapfiltError('OUTPUT_SHARD_INVALID', `${outDir}: shard ${name} has no image for ${ref}`, { ref });
      return b;
    },
  };
}

function filterOptions(o: RethresholdOptions, clipTopThreshold: number | null): FilterOptions {
  return { itmThreshold: o.itmThreshold, itcThreshold: o.itcThreshold, selection: o.selection, keepTop: o.keepTop, selectBy: o.selectBy ?? 'itc', clipMinScore: o.clipMinScore ?? null, clipTopThreshold } as FilterOptions;
}

function rethresholdRow(r: RowRecord, f: FilterOptions, hasImage: (ref: string) => boolean): void {
  // A near-duplicate (capfilt dedup) was dropped for its image, not its scores: it stays dropped.
  if (r.status === 'failed' || r.trusted || r.scores.length === 0 || r.nearDuplicate) return;
  decideRow(r, f);
  if (f.clipTopThreshold !== null && f.clipTopThreshold !== undefined) r.clipTop = { threshold: f.clipTopThreshold, provisional: false };
  else delete r.clipTop;
  if (r.status === 'kept' && !(r.image && hasImage(r.image.ref))) {
    r.status = 'filtered';
    r.reason = 'RETHRESHOLD_IMAGE_MISSING';
    r.reasonDetail = 'passes the new thresholds, but the old output holds no image for this row';
    r.selected = null;
  }
}

/** What a shard's tars hold of a row: its status, reason, selected caption and texts (key.json). */
const tarFingerprint = (r: RowRecord) => JSON.stringify([r.status, r.reason, r.selected, r.scores]);

/**
 * The exact top-fraction threshold of an output: every ranked text's CLIP score, read from each
 * shard's parquet, and the provisional thresholds its rows were decided with.
 */
async function topFractionThreshold(store: ObjectStore, shards: readonly string[], fraction: number, columns: readonly OutputColumn[]) {
  const scores: number[] = [];
  let provisional: { min: number; max: number } | null = null;
  for (const name of shards) {
    const records = await readShardParquet({ store, name: `${name}.parquet` }, columns);
    for (const v of rankedScores(records)) scores.push(v);
    for (const r of records) {
      if (!r.clipTop?.provisional) continue;
      const t = r.clipTop.threshold;
      provisional = provisional ? { min: Math.min(provisional.min, t), max: Math.max(provisional.max, t) } : { min: t, max: t };
    }
  }
  const threshold = exactTopThreshold(scores, fraction);
  return { threshold, texts: scores.length, textsAtOrAbove: threshold === null ? 0 : scores.filter((v) => v >= threshold).length, provisional };
}

/** Re-decides a shard's records; returns the rows whose status moved and whether its tars must change. */
function redecideShard(records: RowRecord[], f: FilterOptions, hasImage: (ref: string) => boolean, summary: RethresholdSummary) {
  let toKept = 0;
  let toFiltered = 0;
  let tarsChange = false;
  for (const r of records) {
    const before = `${r.status}\u0000${r.selected}`;
    const status = r.status;
    const tar = tarFingerprint(r);
    rethresholdRow(r, f, hasImage);
    if (`${r.status}\u0000${r.selected}` !== before) summary.changed++;
    if (status === 'filtered' && r.status === 'kept') toKept++;
    if (status === 'kept' && r.status === 'filtered') toFiltered++;
    if (tarFingerprint(r) !== tar) tarsChange = true;
    summary.rows++;
    summary[r.status as 'kept' | 'filtered' | 'failed']++;
  }
  return { toKept, toFiltered, tarsChange };
}

function newSummary(from: string, to: string, shards: number): RethresholdSummary {
  return { from, to, shards, rows: 0, kept: 0, filtered: 0, failed: 0, changed: 0 };
}

/** The S3 options when a caller gives none: config/default.yaml's, with the AWS variables applied by the client. */
export function defaultS3Options(): CapfiltConfig['s3'] {
  return loadConfig({ env: {} }).config.s3;
}

const locationOf = (x: string | OutputLocation, s3: CapfiltConfig['s3']) => (typeof x === 'string' ? openOutput(x, s3) : x);

export async function rethreshold(from: string | OutputLocation, to: string | OutputLocation, o: RethresholdOptions, s3: CapfiltConfig['s3'] = defaultS3Options()): Promise<RethresholdSummary> {
  const src = locationOf(from, s3);
  const dst = locationOf(to, s3);
  if (src.location === dst.location) throw new CapfiltError('CLI_USAGE', `rethreshold writes a new output folder: --to must differ from ${src.location}`);
  const shards = await listShards(src.store);
  if (shards.length === 0) throw new CapfiltError('OUTPUT_SHARD_INVALID', `${src.location}: no finished shards (NNNNN.parquet) to rethreshold`, { dir: src.location });
  const existing = [...(await listShards(dst.store).catch(() => [])).map((n) => `${n}.parquet`), ...((await dst.store.size('run.json')) !== null ? ['run.json'] : [])];
  if (existing.length) throw new CapfiltError('OUTPUT_EXISTS', `${dst.location} already holds output (${existing.slice(0, 3).join(', ')}); choose an empty folder`, { dir: dst.location });
  const columns = outputColumns();
  const summary = newSummary(src.location, dst.location, shards.length);
  const fraction = o.clipTopFraction ?? null;
  const top = fraction !== null ? await topFractionThreshold(src.store, shards, fraction, columns) : null;
  const f = filterOptions(o, top?.threshold ?? null);
  const moved = { toKept: 0, toFiltered: 0 };
  const run = (await readRunJson(src.store)) ?? {};
  // A source run with clip.saveEmbeddings records embeddingsWritten (0 included).
  if (typeof run.embeddingsWritten === 'number') summary.embeddings = { carried: 0, keptWithout: 0 };
  for (const name of shards) {
    await src.withShard(name, async (fromDir) => {
      const records = await readShardParquet(shardPaths(fromDir, name).parquet, columns);
      const images = await shardImages(fromDir, name);
      const m = redecideShard(records, f, images.has, summary);
      moved.toKept += m.toKept;
      moved.toFiltered += m.toFiltered;
      await dst.withShard(name, async (toDir) => {
        const carried = await readEmbeddings(fromDir, name, { text: true });
        if (summary.embeddings) {
          const saved = new Set(carried?.keys ?? []);
          const kept = records.filter((r) => r.status === 'kept');
          const n = kept.filter((r) => saved.has(r.key)).length;
          summary.embeddings.carried += n;
          summary.embeddings.keptWithout += kept.length - n;
        }
        return writeShardFiles(records, { outDir: toDir, name, images, hasImage: images.has, startTime: Date.now(), columns, carriedEmbeddings: carried, ...(fraction !== null ? { topFraction: { fraction, rowsMoved: m.toKept + m.toFiltered } } : {}) });
      });
    }, { fetch: true });
  }
  if (top && fraction !== null) summary.topFraction = { fraction, ...top, rowsMoved: moved, shardsRewritten: shards.length };
  await writeRunJson(dst.store, {
    ...run,
    rethreshold: { from: src.location, at: new Date().toISOString(), ...o },
    rows: summary.rows,
    kept: summary.kept,
    filtered: summary.filtered,
    failed: summary.failed,
    ...(summary.topFraction ? { clipTopFraction: summary.topFraction } : {}),
    ...(summary.embeddings ? { embeddingsWritten: summary.embeddings.carried } : {}),
  });
  summary.report = await refreshReport(dst);
  return summary;
}

/** The times of a shard's first write, kept when only its parquet and stats are rewritten. */
async function writtenTimes(dir: string, name: string): Promise<{ startTime: number; endTime: number; timings: Record<string, number> } | null> {
  try {
    const s = JSON.parse(await readFile(shardPaths(dir, name).stats, 'utf8')) as { start_time: number; end_time: number; timings_ms?: Record<string, number> };
    return { startTime: s.start_time * 1000, endTime: s.end_time * 1000, timings: s.timings_ms ?? {} };
  } catch {
    return null;
  }
}

/**
 * The final pass of a run with `clip.topFraction`, in place: the exact threshold from every
 * written shard's parquet scores, every row re-decided with it by the run's own rules, and each
 * shard rewritten — in full when a row's status or key.json changed (rows move between NNNNN.tar
 * and filtered/NNNNN.tar), else only its parquet and stats (the provisional mark cleared).
 * A full rewrite first puts every image of the shard into filtered/NNNNN.tar, then writes
 * NNNNN.tar, the final filtered tar, the stats and the parquet last: a crash at any point leaves
 * each image in one of the two tars and the old parquet or the new one, and running the pass
 * again (resuming the run) gives the same result, as it decides from the stored scores alone.
 */
export async function finishTopFraction(out: string | OutputLocation, o: RethresholdOptions & { clipTopFraction: number }, columns: readonly OutputColumn[] = outputColumns(), s3: CapfiltConfig['s3'] = defaultS3Options()): Promise<RethresholdSummary & { topFraction: TopFractionSummary }> {
  const output = locationOf(out, s3);
  const shards = await listShards(output.store);
  const summary = newSummary(output.location, output.location, shards.length);
  const fraction = o.clipTopFraction;
  const top = await topFractionThreshold(output.store, shards, fraction, columns);
  const f = filterOptions(o, top.threshold);
  const moved = { toKept: 0, toFiltered: 0 };
  let shardsRewritten = 0;
  for (const name of shards) {
    await output.withShard(name, async (dir, checkpoint) => {
      const records = await readShardParquet(shardPaths(dir, name).parquet, columns);
      const images = await shardImages(dir, name);
      const m = redecideShard(records, f, images.has, summary);
      moved.toKept += m.toKept;
      moved.toFiltered += m.toFiltered;
      const topFraction = { fraction, rowsMoved: m.toKept + m.toFiltered };
      const times = await writtenTimes(dir, name);
      if (m.tarsChange) {
        shardsRewritten++;
        // Only rows whose image is in the old tars (a row failed after its download may still name one).
        await writeImagesTar(shardPaths(dir, name).filteredTar, records.filter((r) => r.image && images.has(r.image.ref)), images);
        // On S3 this tar of every image must be stored before NNNNN.tar is replaced, as on disk.
        await checkpoint();
        await writeShardFiles(records, { outDir: dir, name, images, hasImage: images.has, startTime: times?.startTime ?? Date.now(), timings: times?.timings, columns, topFraction });
      } else {
        await writeShardTable(records, { outDir: dir, name, startTime: times?.startTime ?? Date.now(), endTime: times?.endTime, timings: times?.timings, columns, topFraction });
      }
    }, { fetch: true });
  }
  return { ...summary, topFraction: { fraction, ...top, rowsMoved: moved, shardsRewritten } };
}
