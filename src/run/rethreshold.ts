import { access, mkdir, readdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import { CapfiltError } from '../core/errors.ts';
import { decideRow, type FilterOptions } from '../pipeline/decisions.ts';
import type { RowRecord } from '../core/records.ts';
import { readRunJson, writeRunJson } from '../io/writers/run-json.ts';
import { listShards, shardPaths, writeShardFiles, type ImageSource } from '../io/writers/shard.ts';
import { readShardParquet } from '../io/writers/shard-parquet.ts';
import { readTarEntries } from '../io/writers/tar.ts';
import { outputColumns } from '../pipeline/stages/table.ts';

/**
 * `rethreshold`: a new output folder with the filter decisions remade from the scores stored in
 * every shard parquet, by the same rules the filter stage uses (src/pipeline/decisions.ts) — no
 * model runs. Failed rows, trusted rows and rows of runs without a filter stage stay as they
 * were. Images are copied from the old shard's tars: kept rows from NNNNN.tar, filtered rows
 * from filtered/NNNNN.tar; a row that now passes but whose image was not kept (a shard written
 * without filtered images) is filtered with RETHRESHOLD_IMAGE_MISSING.
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

function rethresholdRow(r: RowRecord, o: RethresholdOptions, hasImage: (ref: string) => boolean): void {
  if (r.status === 'failed' || r.trusted || r.scores.length === 0) return;
  decideRow(r, { itmThreshold: o.itmThreshold, itcThreshold: o.itcThreshold, selection: o.selection, keepTop: o.keepTop, selectBy: o.selectBy ?? 'itc', clipMinScore: o.clipMinScore ?? null } as FilterOptions);
  if (r.status === 'kept' && !(r.image && hasImage(r.image.ref))) {
    r.status = 'filtered';
    r.reason = 'RETHRESHOLD_IMAGE_MISSING';
    r.reasonDetail = 'passes the new thresholds, but the old output holds no image for this row';
    r.selected = null;
  }
}

export async function rethreshold(from: string, to: string, o: RethresholdOptions): Promise<RethresholdSummary> {
  if (resolve(from) === resolve(to)) throw new CapfiltError('CLI_USAGE', `rethreshold writes a new output folder: --to must differ from ${from}`);
  const shards = await listShards(from);
  if (shards.length === 0) throw new CapfiltError('OUTPUT_SHARD_INVALID', `${from}: no finished shards (NNNNN.parquet) to rethreshold`, { dir: from });
  await mkdir(to, { recursive: true });
  const existing = (await readdir(to)).filter((n) => /^\d+\.parquet$/.test(n) || n === 'run.json');
  if (existing.length) throw new CapfiltError('OUTPUT_EXISTS', `${to} already holds output (${existing.slice(0, 3).join(', ')}); choose an empty folder`, { dir: to });
  const summary: RethresholdSummary = { from, to, shards: shards.length, rows: 0, kept: 0, filtered: 0, failed: 0, changed: 0 };
  for (const name of shards) {
    const records = await readShardParquet(shardPaths(from, name).parquet, outputColumns());
    const images = await shardImages(from, name);
    for (const r of records) {
      const before = `${r.status}\u0000${r.selected}`;
      rethresholdRow(r, o, images.has);
      if (`${r.status}\u0000${r.selected}` !== before) summary.changed++;
      summary.rows++;
      summary[r.status as 'kept' | 'filtered' | 'failed']++;
    }
    await writeShardFiles(records, { outDir: to, name, images, startTime: Date.now(), columns: outputColumns() });
  }
  const run = (await readRunJson(from)) ?? {};
  await writeRunJson(to, {
    ...run,
    rethreshold: { from: resolve(from), at: new Date().toISOString(), ...o },
    rows: summary.rows,
    kept: summary.kept,
    filtered: summary.filtered,
    failed: summary.failed,
  });
  return summary;
}
