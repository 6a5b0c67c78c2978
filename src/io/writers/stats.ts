import { CapfiltError } from '../../core/errors.ts';
import type { RowRecord } from '../../core/records.ts';
import { storeOf, type ObjectStore } from '../storage/object-store.ts';
import { readIfPresent } from '../storage/output.ts';

/**
 * `NNNNN_stats.json`: img2dataset's fields (so its tooling and habits carry over) plus
 * capfilt's accounting and filter rates.
 *   count               input rows of the shard
 *   successes           rows whose image was downloaded and resized (img2dataset's meaning)
 *   failed_to_download  rows failed by input validation (INPUT_*) or the download (DOWNLOAD_*)
 *   failed_to_resize    rows whose bytes were not a usable image (IMAGE_*, duplicates included)
 *   status_dict         row count per reason code ("success" for rows with an image, as img2dataset)
 *   kept / filtered / failed    the final statuses; kept + filtered + failed = count
 *   filter              texts scored and kept, per source, and their rates
 */
export interface ShardStats {
  shard: string;
  count: number;
  successes: number;
  failed_to_download: number;
  failed_to_resize: number;
  duration: number;
  start_time: number;
  end_time: number;
  status_dict: Record<string, number>;
  kept: number;
  filtered: number;
  failed: number;
  failed_other: number;
  duplicates: number;
  reasons: Record<string, number>;
  selected_source: Record<string, number>;
  filter: {
    web_scored: number;
    web_kept: number;
    web_kept_rate: number | null;
    synthetic_scored: number;
    synthetic_kept: number;
    synthetic_kept_rate: number | null;
    rows_kept_rate: number | null;
  };
  timings_ms: Record<string, number>;
  /** Texts each decision rule rejected (itm, itc, clip, top_fraction, top): the per-rule filter rates. */
  rejected_by: Record<string, number>;
  /** Rows per top zero-shot label, when the run labels images (clip.labels). */
  labels?: Record<string, number>;
  /**
   * DataComp's top-fraction rule (clip.topFraction): the threshold the shard's rows were decided
   * with, whether it was the provisional one (written while the run streamed), and, once the
   * run's final pass wrote the shard, the fraction and how many of its rows that pass moved
   * between kept and filtered.
   */
  top_fraction?: { threshold: number; provisional: boolean; fraction: number | null; rows_moved: number | null };
  /** Rows written to embeddings/ (kept rows with CLIP embeddings), when the run saves them (clip.saveEmbeddings). */
  embeddings?: number;
}

export function shardStats(
  shard: string,
  records: RowRecord[],
  times: { startTime: number; endTime: number; timings?: Record<string, number | undefined>; topFraction?: { fraction: number; rowsMoved: number } },
): ShardStats {
  const inc = (o: Record<string, number>, k: string) => (o[k] = (o[k] ?? 0) + 1);
  const s: ShardStats = {
    shard,
    count: records.length,
    successes: 0,
    failed_to_download: 0,
    failed_to_resize: 0,
    duration: Math.max(0, (times.endTime - times.startTime) / 1000),
    start_time: times.startTime / 1000,
    end_time: times.endTime / 1000,
    status_dict: {},
    kept: 0,
    filtered: 0,
    failed: 0,
    failed_other: 0,
    duplicates: 0,
    reasons: {},
    selected_source: {},
    filter: { web_scored: 0, web_kept: 0, web_kept_rate: null, synthetic_scored: 0, synthetic_kept: 0, synthetic_kept_rate: null, rows_kept_rate: null },
    timings_ms: Object.fromEntries(Object.entries(times.timings ?? {}).filter((e): e is [string, number] => typeof e[1] === 'number')),
    rejected_by: {},
  };
  for (const r of records) {
    const reason = r.reason ?? (r.status === 'kept' ? 'KEPT' : 'UNKNOWN');
    inc(s.reasons, reason);
    if (r.image) {
      s.successes++;
      inc(s.status_dict, 'success');
    } else {
      inc(s.status_dict, reason);
    }
    if (r.image?.duplicateOf || r.reason === 'IMAGE_DUPLICATE') s.duplicates++;
    if (r.status === 'kept') s.kept++;
    else if (r.status === 'filtered') s.filtered++;
    else if (r.status === 'failed') {
      s.failed++;
      if (/^(INPUT|DOWNLOAD)_/.test(reason)) s.failed_to_download++;
      else if (/^IMAGE_/.test(reason)) s.failed_to_resize++;
      else s.failed_other++;
    }
    if (r.labels?.length) inc((s.labels ??= {}), r.labels[0].label);
    if (r.clipTop) {
      const t = (s.top_fraction ??= { threshold: r.clipTop.threshold, provisional: false, fraction: times.topFraction?.fraction ?? null, rows_moved: times.topFraction?.rowsMoved ?? null });
      t.provisional ||= r.clipTop.provisional;
    }
    if (r.clipEmbedding) s.embeddings = (s.embeddings ?? 0) + (r.status === 'kept' ? 1 : 0);
    for (const t of r.scores) {
      for (const rule of t.rejectedBy ?? []) inc(s.rejected_by, rule);
      if (t.source === 'web') {
        s.filter.web_scored++;
        if (t.kept) s.filter.web_kept++;
      } else if (t.source === 'synthetic') {
        s.filter.synthetic_scored++;
        if (t.kept) s.filter.synthetic_kept++;
      }
    }
    if (r.status === 'kept' && r.selected !== null) {
      const src = r.trusted ? 'trusted' : r.scores.find((t) => t.text === r.selected)?.source ?? (r.selected === r.text ? 'web' : 'synthetic');
      inc(s.selected_source, src);
    }
  }
  const rate = (a: number, b: number) => (b > 0 ? a / b : null);
  s.filter.web_kept_rate = rate(s.filter.web_kept, s.filter.web_scored);
  s.filter.synthetic_kept_rate = rate(s.filter.synthetic_kept, s.filter.synthetic_scored);
  s.filter.rows_kept_rate = rate(s.kept, s.kept + s.filtered);
  return s;
}

/** The CLIP stage's counts of a run, summed over its shards' `NNNNN_stats.json`. */
export interface RunClipCounts {
  /** Texts each decision rule rejected (itm, itc, clip, top_fraction, top). */
  rejectedBy: Record<string, number>;
  /** Rows per top zero-shot label; null when no shard labelled its images. */
  labelCounts: Record<string, number> | null;
  /** Rows written to embeddings/; null when no shard saved embeddings. */
  embeddingsWritten: number | null;
}

/**
 * Sums the per-shard counts of the named shards in `outDir` (shards skipped on resume count,
 * as their files are part of the output; a shard without a stats file, e.g. a failed one, adds nothing).
 */
export async function sumShardStats(outDir: string | ObjectStore, names: readonly string[]): Promise<RunClipCounts> {
  const store = storeOf(outDir);
  const out: RunClipCounts = { rejectedBy: {}, labelCounts: null, embeddingsWritten: null };
  const add = (to: Record<string, number>, from: Record<string, number> | undefined) => {
    for (const [k, v] of Object.entries(from ?? {})) to[k] = (to[k] ?? 0) + v;
  };
  for (const name of names) {
    const file = store.locate(`${name}_stats.json`);
    let text: string;
    try {
      const bytes = await readIfPresent(store, `${name}_stats.json`);
      if (!bytes) continue;
      text = bytes.toString('utf8');
    } catch (e) {
      throw new CapfiltError('OUTPUT_SHARD_INVALID', `${file}: ${(e as Error).message}`, { file }, { cause: e });
    }
    let s: ShardStats;
    try {
      s = JSON.parse(text) as ShardStats;
    } catch (e) {
      throw new CapfiltError('OUTPUT_SHARD_INVALID', `${file} is not JSON: ${(e as Error).message}`, { file }, { cause: e });
    }
    add(out.rejectedBy, s.rejected_by);
    if (s.labels) add((out.labelCounts ??= {}), s.labels);
    if (s.embeddings !== undefined) out.embeddingsWritten = (out.embeddingsWritten ?? 0) + s.embeddings;
  }
  return out;
}
