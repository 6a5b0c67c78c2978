import type { RedisClient } from '../core/redis.ts';
import type { RowStatus } from '../core/records.ts';
import {
  CLIP_HISTOGRAM, DEFAULT_PREFIX, HISTOGRAMS, STAGES, keys,
  type HistogramSpec, type RunMeta, type SampleEntry, type ScoreName, type WorkerInfo,
} from './stats-schema.ts';

/**
 * Reads what StatsWriter wrote, for the dashboard and `/metrics`. A run snapshot is a handful of
 * HGETALLs in one pipeline (fixed-size hashes), so polling it every second is cheap whatever the
 * run size. Samples are read separately because they carry thumbnails.
 */
export interface StageCounters {
  rows: number;
  shards: number;
  statuses: Partial<Record<RowStatus, number>>;
}

export interface TextCounts {
  kept: number;
  total: number;
}

export interface RunCounters {
  done: number;
  shardsDone: number;
  final: Record<'kept' | 'filtered' | 'failed', number>;
  stages: Record<string, StageCounters>;
  /** Reason code → rows, for rows that ended failed and rows that ended filtered. */
  failedReasons: Record<string, number>;
  filteredReasons: Record<string, number>;
  texts: Record<string, TextCounts>;
  imagesScored: number;
  imagesAnyKept: number;
  /** Texts rejected per decision rule (itm, itc, clip, top). */
  rejectedBy: Record<string, number>;
  /** Rows per top zero-shot label. */
  labels: Record<string, number>;
  embeddingsWritten: number;
}

export interface HistogramSet {
  spec: HistogramSpec;
  /** Source (web, synthetic, trusted) → counts per bucket. */
  counts: Record<string, number[]>;
}

export interface RunSnapshot {
  meta: RunMeta;
  counters: RunCounters;
  histograms: Record<ScoreName, HistogramSet>;
  /** CLIP scores of the texts by decision (counts `kept`, `dropped`); null when no text has one. */
  clipHistogram: HistogramSet | null;
  /** Stage → [bucket start (unix s), rows/s in that bucket], oldest first. */
  series: Record<string, Array<[number, number]>>;
  /** Rows/s finishing the run's last stage over the last minute. */
  rowsPerSec: number;
  etaSec: number | null;
  updatedAt: number | null;
}

export interface RunSummary {
  meta: RunMeta;
  done: number;
  final: RunCounters['final'];
  updatedAt: number | null;
}

export interface SampleQuery {
  status?: RowStatus | null;
  noise?: string | null;
  reason?: string | null;
  limit?: number;
}

export type WorkerView = WorkerInfo & { live: boolean };

const RATE_WINDOW_SEC = 60;

export class StatsReader {
  readonly prefix: string;
  private readonly k: ReturnType<typeof keys>;

  constructor(private readonly redis: RedisClient, prefix = DEFAULT_PREFIX, private readonly heartbeatTtlMs = 15_000) {
    this.prefix = prefix;
    this.k = keys(prefix);
  }

  /** Newest runs first. */
  async listRuns(limit = 20): Promise<RunSummary[]> {
    const ids = await this.redis.zrevrange(this.k.runs, 0, limit - 1);
    if (!ids.length) return [];
    const p = this.redis.pipeline();
    for (const id of ids) {
      p.hgetall(this.k.meta(id));
      p.hmget(this.k.counters(id), 'done', 'final:kept', 'final:filtered', 'final:failed');
    }
    const res = (await p.exec()) ?? [];
    const out: RunSummary[] = [];
    ids.forEach((id, i) => {
      const raw = res[2 * i]?.[1] as Record<string, string> | undefined;
      const c = (res[2 * i + 1]?.[1] as Array<string | null> | undefined) ?? [];
      if (!raw || !Object.keys(raw).length) return;
      const meta = decodeMeta(id, raw);
      out.push({
        meta,
        done: num(c[0]),
        final: { kept: num(c[1]), filtered: num(c[2]), failed: num(c[3]) },
        updatedAt: raw.updatedAt ? Number(raw.updatedAt) : null,
      });
    });
    return out;
  }

  async run(runId: string, now = Date.now()): Promise<RunSnapshot | null> {
    const rawMeta = await this.redis.hgetall(this.k.meta(runId));
    if (!Object.keys(rawMeta).length) return null;
    const meta = decodeMeta(runId, rawMeta);
    const stages = [...new Set([...meta.stages, ...STAGES])];
    const p = this.redis.pipeline().hgetall(this.k.counters(runId)).hgetall(this.k.hist(runId));
    for (const s of stages) p.hgetall(this.k.series(runId, s));
    const res = (await p.exec()) ?? [];
    const counters = decodeCounters((res[0]?.[1] ?? {}) as Record<string, string>);
    const rawHist = (res[1]?.[1] ?? {}) as Record<string, string>;
    const histograms = decodeHistograms(rawHist);
    const clipHistogram = decodeClipHistogram(rawHist);
    const series: Record<string, Array<[number, number]>> = {};
    stages.forEach((s, i) => {
      const raw = (res[2 + i]?.[1] ?? {}) as Record<string, string>;
      const pts = Object.entries(raw).map(([t, n]) => [Number(t), Number(n) / meta.bucketSec] as [number, number]);
      if (pts.length) series[s] = pts.sort((a, b) => a[0] - b[0]);
    });
    const last = [...(meta.stages.length ? meta.stages : STAGES)].reverse().find((s) => series[s]) ?? 'write';
    const rowsPerSec = recentRate(series[last] ?? [], meta, now);
    const remaining = meta.totalRows === null ? null : Math.max(0, meta.totalRows - counters.done);
    const etaSec = remaining === null || meta.state !== 'running' ? null
      : remaining === 0 ? 0 : rowsPerSec > 0 ? remaining / rowsPerSec : null;
    return { meta, counters, histograms, clipHistogram, series, rowsPerSec, etaSec, updatedAt: rawMeta.updatedAt ? Number(rawMeta.updatedAt) : null };
  }

  async samples(runId: string, q: SampleQuery = {}): Promise<SampleEntry[]> {
    const raw = await this.redis.lrange(this.k.samples(runId), 0, -1);
    const out: SampleEntry[] = [];
    for (const s of raw) {
      const e = JSON.parse(s) as SampleEntry;
      if (q.status && e.status !== q.status) continue;
      if (q.noise && (e.noise ?? 'none') !== q.noise) continue;
      if (q.reason && e.reason !== q.reason) continue;
      out.push(e);
      if (q.limit && out.length >= q.limit) break;
    }
    return out;
  }

  /** Workers heard from recently; `live` is false once a heartbeat is overdue. */
  async workers(now = Date.now()): Promise<WorkerView[]> {
    const info = await this.redis.hgetall(this.k.workerInfo);
    return Object.values(info)
      .map((s) => JSON.parse(s) as WorkerInfo)
      .map((w) => ({ ...w, live: now - w.lastSeen <= (w.ttlMs || this.heartbeatTtlMs) }))
      .sort((a, b) => Number(b.live) - Number(a.live) || a.host.localeCompare(b.host) || a.pid - b.pid);
  }
}

function num(v: string | null | undefined): number {
  return v ? Number(v) : 0;
}

function recentRate(points: Array<[number, number]>, meta: RunMeta, now: number): number {
  const nowSec = now / 1000;
  const recent = points.filter(([t]) => t >= nowSec - RATE_WINDOW_SEC);
  if (!recent.length) return 0;
  const rows = recent.reduce((a, [, r]) => a + r * meta.bucketSec, 0);
  // Measure from the first bucket seen in the window (or run start), not the full window, so a
  // run that began 10 s ago is not reported at a sixth of its speed.
  const from = Math.max(recent[0][0], meta.startedAt / 1000, nowSec - RATE_WINDOW_SEC);
  const end = meta.finishedAt ? Math.min(nowSec, meta.finishedAt / 1000) : nowSec;
  return rows / Math.max(meta.bucketSec, end - from);
}

export function decodeMeta(runId: string, raw: Record<string, string>): RunMeta {
  const n = (v: string | undefined) => (v === undefined || v === '' ? null : Number(v));
  const j = <T>(v: string | undefined, d: T): T => { try { return v ? (JSON.parse(v) as T) : d; } catch { return d; } };
  return {
    runId,
    input: raw.input ?? '',
    totalRows: n(raw.totalRows),
    totalShards: n(raw.totalShards),
    startedAt: n(raw.startedAt) ?? 0,
    finishedAt: n(raw.finishedAt),
    state: raw.state || 'running',
    stages: j(raw.stages, [] as string[]),
    queuePrefix: raw.queuePrefix || null,
    queues: j(raw.queues, {} as Record<string, string>),
    itmThreshold: n(raw.itmThreshold),
    itcThreshold: n(raw.itcThreshold),
    clipMinScore: n(raw.clipMinScore),
    out: raw.out || null,
    labels: j(raw.labels, {} as Record<string, string>),
    bucketSec: n(raw.bucketSec) ?? 5,
  };
}

export function decodeCounters(raw: Record<string, string>): RunCounters {
  const c: RunCounters = {
    done: 0, shardsDone: 0, final: { kept: 0, filtered: 0, failed: 0 }, stages: {},
    failedReasons: {}, filteredReasons: {}, texts: {}, imagesScored: 0, imagesAnyKept: 0,
    rejectedBy: {}, labels: {}, embeddingsWritten: 0,
  };
  const stage = (s: string) => (c.stages[s] ??= { rows: 0, shards: 0, statuses: {} });
  for (const [field, v] of Object.entries(raw)) {
    const n = Number(v);
    const parts = field.split(':');
    switch (parts[0]) {
      case 'done': c.done = n; break;
      case 'shards': c.shardsDone = n; break;
      case 'images': if (parts[1] === 'scored') c.imagesScored = n; else c.imagesAnyKept = n; break;
      case 'rule': c.rejectedBy[parts.slice(1).join(':')] = n; break;
      case 'label': c.labels[parts.slice(1).join(':')] = n; break;
      case 'embeddings': c.embeddingsWritten = n; break;
      case 'final': if (parts[1] in c.final) c.final[parts[1] as keyof RunCounters['final']] = n; break;
      case 'reason': {
        const reason = parts.slice(2).join(':');
        if (parts[1] === 'failed') c.failedReasons[reason] = n; else c.filteredReasons[reason] = n;
        break;
      }
      case 'texts': {
        const t = (c.texts[parts[1]] ??= { kept: 0, total: 0 });
        t.total += n;
        if (parts[2] === 'kept') t.kept += n;
        break;
      }
      case 'stage': {
        const s = stage(parts[1]);
        if (parts[2] === 'rows') s.rows = n;
        else if (parts[2] === 'shards') s.shards = n;
        else s.statuses[parts[2] as RowStatus] = n;
        break;
      }
      default: break;
    }
  }
  return c;
}

export function decodeHistograms(raw: Record<string, string>): Record<ScoreName, HistogramSet> {
  const out = {
    itm: { spec: HISTOGRAMS.itm, counts: {} as Record<string, number[]> },
    itc: { spec: HISTOGRAMS.itc, counts: {} as Record<string, number[]> },
  };
  for (const [field, v] of Object.entries(raw)) {
    const [score, source, bucket] = field.split(':');
    const set = out[score as ScoreName];
    if (!set) continue;
    const arr = (set.counts[source] ??= new Array<number>(set.spec.buckets).fill(0));
    const b = Number(bucket);
    if (b >= 0 && b < arr.length) arr[b] = Number(v);
  }
  return out;
}

export function decodeClipHistogram(raw: Record<string, string>): HistogramSet | null {
  const counts: Record<string, number[]> = {};
  for (const [field, v] of Object.entries(raw)) {
    const [score, decision, bucket] = field.split(':');
    if (score !== 'clip') continue;
    const arr = (counts[decision] ??= new Array<number>(CLIP_HISTOGRAM.buckets).fill(0));
    const b = Number(bucket);
    if (b >= 0 && b < arr.length) arr[b] = Number(v);
  }
  return Object.keys(counts).length ? { spec: CLIP_HISTOGRAM, counts } : null;
}
