import { createHash } from 'node:crypto';
import sharp from 'sharp';
import { CapfiltError } from '../core/errors.ts';
import { scoreOf, type RowRecord, type ScoredText } from '../core/records.ts';
import { storeOf, type ObjectStore } from '../io/storage/object-store.ts';
import { readIfPresent, type OutputLocation } from '../io/storage/output.ts';
import { readRunJson } from '../io/writers/run-json.ts';
import { listShards } from '../io/writers/shard.ts';
import { readShardParquet } from '../io/writers/shard-parquet.ts';
import { readTarEntries } from '../io/writers/tar.ts';
import type { ShardStats } from '../io/writers/stats.ts';

/**
 * Everything `report.html` shows, gathered from a finished output folder alone (run.json, the
 * shard parquets, NNNNN_stats.json, the tars), so a report can be built for any output, long
 * after its Redis is gone. One pass over the shards with bounded state: score histograms on a
 * fixed fine grid, counters, a few example URLs per reason, and a gallery chosen by the smallest
 * hashes of the row keys (spread over every shard, the same on every rebuild); only the chosen
 * rows' images are then read from the tars. The output may be a folder or an S3 prefix.
 */
export interface ScoreHistogram {
  /** Fine grid: bucket i covers [min + i*width, min + (i+1)*width). */
  min: number;
  width: number;
  /** Text source (web, synthetic, trusted) → counts per fine bucket. */
  counts: Record<string, number[]>;
  /** The run's threshold on this score (texts scoring at least it pass), when the run had one. */
  threshold: number | null;
  thresholdLabel: string | null;
}

export interface GalleryText {
  source: string;
  text: string;
  scores: Record<string, number>;
  kept: boolean;
  rejectedBy: string[];
}

export interface GalleryItem {
  key: string;
  status: 'kept' | 'filtered';
  url: string | null;
  selected: string | null;
  /** JPEG thumbnail as a data: URI; null when the output holds no image for the row. */
  thumbnail: string | null;
  texts: GalleryText[];
  /** What decided the row: the rules that rejected its texts, or the kept text's source. */
  decidedBy: string;
  labels: string[];
}

export interface ReportData {
  out: string;
  generatedAt: string;
  run: {
    runId: string | null;
    status: string | null;
    input: string | null;
    stages: string[];
    seconds: number | null;
    rowsPerSec: number | null;
    finishedAt: string | null;
    reconciled: boolean | null;
  };
  shards: number;
  totals: { rows: number; kept: number; filtered: number; failed: number };
  /** img2dataset's counters summed from NNNNN_stats.json. */
  img2dataset: { successes: number; failedToDownload: number; failedToResize: number };
  texts: Record<string, { scored: number; kept: number }>;
  /** Decision rule → texts it rejected (a text rejected by two rules counts for both). */
  rules: Record<string, number>;
  reasons: { filtered: Record<string, number>; failed: Record<string, number> };
  failureExamples: Record<string, Array<{ url: string | null; detail: string | null }>>;
  histograms: Record<string, ScoreHistogram>;
  labels: Record<string, number> | null;
  /** Stage → milliseconds summed over shards (NNNNN_stats.json timings_ms). */
  timings: Record<string, number>;
  gallery: GalleryItem[];
}

export interface CollectOptions {
  /** Gallery rows of each status. */
  galleryPerStatus?: number;
  /** Example URLs kept per failure reason. */
  examplesPerReason?: number;
  thumbnailPx?: number;
}

const GRID = { min: -1, width: 0.005, buckets: 400 };
const SCORE_RANGE: Record<string, { min: number; width: number; buckets: number }> = { itm: { min: 0, width: 0.005, buckets: 200 } };

const inc = (o: Record<string, number>, k: string, n = 1) => (o[k] = (o[k] ?? 0) + n);
const hashOf = (key: string) => createHash('sha1').update(key).digest().readUInt32BE(0);

interface Candidate {
  hash: number;
  shard: string;
  record: RowRecord;
}

export async function collectReport(output: string | OutputLocation | ObjectStore, o: CollectOptions = {}): Promise<ReportData> {
  const store = typeof output === 'string' ? storeOf(output) : 'store' in output ? output.store : output;
  const out = store.location;
  const perStatus = o.galleryPerStatus ?? 12;
  const examples = o.examplesPerReason ?? 3;
  const run = await readRunJson(store).catch((e: unknown) => {
    throw new CapfiltError('REPORT_FAILED', `${out}: ${(e as Error).message}`, { dir: out }, { cause: e });
  });
  const shards = await listShards(store).catch((e: unknown) => {
    throw new CapfiltError('REPORT_FAILED', `${out}: ${(e as Error).message}`, { dir: out }, { cause: e });
  });
  if (!shards.length && !run) throw new CapfiltError('REPORT_FAILED', `${out}: no run.json and no finished shard (NNNNN.parquet): not a capfilt output folder`, { dir: out });
  const config = (run?.config ?? null) as Record<string, Record<string, unknown>> | null;
  const stages = Array.isArray(run?.stages) ? (run.stages as string[]) : [];

  const data: ReportData = {
    out,
    generatedAt: new Date().toISOString(),
    run: {
      runId: typeof run?.runId === 'string' ? run.runId : null,
      status: typeof run?.status === 'string' ? run.status : null,
      input: typeof run?.input === 'string' ? run.input : null,
      stages,
      seconds: typeof run?.seconds === 'number' ? run.seconds : null,
      rowsPerSec: typeof run?.rowsPerSec === 'number' ? run.rowsPerSec : null,
      finishedAt: typeof run?.finishedAt === 'string' ? run.finishedAt : null,
      reconciled: typeof run?.reconciled === 'boolean' ? run.reconciled : null,
    },
    shards: shards.length,
    totals: { rows: 0, kept: 0, filtered: 0, failed: 0 },
    img2dataset: { successes: 0, failedToDownload: 0, failedToResize: 0 },
    texts: {},
    rules: {},
    reasons: { filtered: {}, failed: {} },
    failureExamples: {},
    histograms: {},
    labels: null,
    timings: {},
    gallery: [],
  };
  const thresholds = thresholdsOf(config, run, stages);
  const chosen: Record<'kept' | 'filtered', Candidate[]> = { kept: [], filtered: [] };

  for (const shard of shards) {
    let records: RowRecord[];
    try {
      records = await readShardParquet({ store, name: `${shard}.parquet` });
    } catch (e) {
      const file = store.locate(`${shard}.parquet`);
      throw new CapfiltError('REPORT_FAILED', `${file}: ${(e as Error).message}`, { file }, { cause: e });
    }
    const stats = await readStats(store, `${shard}_stats.json`);
    if (stats) {
      data.img2dataset.successes += stats.successes ?? 0;
      data.img2dataset.failedToDownload += stats.failed_to_download ?? 0;
      data.img2dataset.failedToResize += stats.failed_to_resize ?? 0;
      for (const [k, v] of Object.entries(stats.timings_ms ?? {})) if (typeof v === 'number') inc(data.timings, k, v);
    }
    for (const r of records) {
      data.totals.rows++;
      if (r.status === 'kept' || r.status === 'filtered' || r.status === 'failed') data.totals[r.status]++;
      if (r.status === 'failed') {
        const reason = r.reason ?? 'UNKNOWN';
        inc(data.reasons.failed, reason);
        const ex = (data.failureExamples[reason] ??= []);
        if (ex.length < examples) ex.push({ url: r.url, detail: r.reasonDetail });
      } else if (r.status === 'filtered') {
        inc(data.reasons.filtered, r.reason ?? 'UNKNOWN');
      }
      if (r.labels?.length) inc((data.labels ??= {}), r.labels[0].label);
      for (const t of r.scores) {
        const tc = (data.texts[t.source] ??= { scored: 0, kept: 0 });
        tc.scored++;
        if (t.kept) tc.kept++;
        for (const rule of t.rejectedBy ?? []) inc(data.rules, rule);
        for (const name of scoreNamesOf(t)) addScore(data.histograms, name, t.source, scoreOf(t, name)!, thresholds[name]);
      }
      if (r.status === 'kept' || r.status === 'filtered') offer(chosen[r.status], { hash: hashOf(r.key), shard, record: r }, perStatus);
    }
  }
  data.gallery = await galleryOf(store, [...chosen.kept, ...chosen.filtered], o.thumbnailPx ?? 112);
  return data;
}

/** The score fields of a scored text (every numeric field but the decision). */
function scoreNamesOf(t: ScoredText): string[] {
  return Object.keys(t).filter((k) => k !== 'kept' && typeof (t as unknown as Record<string, unknown>)[k] === 'number');
}

function addScore(h: Record<string, ScoreHistogram>, name: string, source: string, v: number, threshold: { value: number; label: string } | undefined): void {
  const grid = SCORE_RANGE[name] ?? GRID;
  const set = (h[name] ??= { min: grid.min, width: grid.width, counts: {}, threshold: threshold?.value ?? null, thresholdLabel: threshold?.label ?? null });
  const counts = (set.counts[source] ??= new Array<number>(grid.buckets).fill(0));
  const b = Math.min(grid.buckets - 1, Math.max(0, Math.floor((v - grid.min) / grid.width + 1e-9)));
  counts[b]++;
}

/** Keeps the `n` candidates of smallest hash. */
function offer(list: Candidate[], c: Candidate, n: number): void {
  if (list.length < n) list.push(c);
  else {
    let worst = 0;
    for (let i = 1; i < list.length; i++) if (list[i].hash > list[worst].hash) worst = i;
    if (c.hash >= list[worst].hash) return;
    list[worst] = c;
  }
}

function thresholdsOf(config: Record<string, Record<string, unknown>> | null, run: Record<string, unknown> | null, stages: string[]): Record<string, { value: number; label: string }> {
  const t: Record<string, { value: number; label: string }> = {};
  const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
  if (!config) return t;
  const itm = num(config.filter?.itmThreshold);
  const itc = num(config.filter?.itcThreshold);
  if (stages.includes('filter') || stages.includes('clip')) {
    if (itm !== null) t.itm = { value: itm, label: `filter.itmThreshold ${itm}` };
    if (itc !== null) t.itc = { value: itc, label: `filter.itcThreshold ${itc}` };
  }
  const clip = num(config.clip?.minScore);
  if (clip !== null) t.clip = { value: clip, label: `clip.minScore ${clip}` };
  // The run's top-fraction pass records the exact CLIP threshold it decided with.
  const top = run?.clipTopFraction as { threshold?: unknown; fraction?: unknown } | undefined;
  const topT = num(top?.threshold);
  if (topT !== null && (clip === null || topT > clip)) t.clip = { value: topT, label: `clip.topFraction threshold ${topT.toFixed(3)}` };
  return t;
}

async function readStats(store: ObjectStore, name: string): Promise<Partial<ShardStats> | null> {
  const file = store.locate(name);
  try {
    const bytes = await readIfPresent(store, name);
    return bytes ? (JSON.parse(bytes.toString('utf8')) as Partial<ShardStats>) : null;
  } catch (e) {
    throw new CapfiltError('REPORT_FAILED', `${file}: ${(e as Error).message}`, { file }, { cause: e });
  }
}

function decidedBy(r: RowRecord): string {
  if (r.status === 'kept') {
    const kept = r.scores.filter((t) => t.kept).map((t) => t.source);
    if (r.trusted) return 'trusted pair (unfiltered)';
    if (!r.scores.length) return 'kept (no filter stage)';
    return `kept: ${[...new Set(kept)].join(' + ')} text passed`;
  }
  const rules = [...new Set(r.scores.flatMap((t) => t.rejectedBy ?? []))];
  return rules.length ? `rejected by ${rules.join(', ')}` : r.reason ?? 'filtered';
}

async function galleryOf(store: ObjectStore, picks: Candidate[], px: number): Promise<GalleryItem[]> {
  const byTar = new Map<string, Candidate[]>();
  for (const c of picks) {
    const tar = c.record.status === 'kept' ? `${c.shard}.tar` : `filtered/${c.shard}.tar`;
    (byTar.get(tar) ?? byTar.set(tar, []).get(tar)!).push(c);
  }
  const thumbs = new Map<Candidate, string | null>();
  for (const [tar, cs] of byTar) {
    // A missing or unreadable tar (output written without filtered images) shows no thumbnail.
    const entries = await readTarEntries({ store, name: tar }).catch(() => null);
    for (const c of cs) {
      const bytes = entries?.get(`${c.record.key}.${c.record.image?.format ?? 'jpg'}`);
      thumbs.set(c, bytes ? await thumbnail(bytes, px) : null);
    }
  }
  return picks
    .sort((a, b) => (a.record.status === b.record.status ? a.hash - b.hash : a.record.status === 'kept' ? -1 : 1))
    .map((c) => ({
      key: c.record.key,
      status: c.record.status as 'kept' | 'filtered',
      url: c.record.url,
      selected: c.record.selected,
      thumbnail: thumbs.get(c) ?? null,
      texts: c.record.scores.map((t) => ({
        source: t.source,
        text: t.text,
        scores: Object.fromEntries(scoreNamesOf(t).map((n) => [n, scoreOf(t, n)!])),
        kept: t.kept,
        rejectedBy: t.rejectedBy ?? [],
      })),
      decidedBy: decidedBy(c.record),
      labels: c.record.labels?.map((l) => l.label) ?? [],
    }));
}

async function thumbnail(bytes: Uint8Array, px: number): Promise<string | null> {
  try {
    const jpg = await sharp(bytes, { limitInputPixels: 64_000_000 }).resize(px, px, { fit: 'inside' }).jpeg({ quality: 72 }).toBuffer();
    return `data:image/jpeg;base64,${jpg.toString('base64')}`;
  } catch {
    return null;
  }
}
