/**
 * The Redis layout of live run statistics, shared by the writer (workers) and the reader
 * (dashboard). Every key lives under `<prefix>:stats:` where prefix is the deployment prefix
 * (config `redis.prefix`, default `capfilt`, the same prefix as the BullMQ queues); every
 * structure is bounded: counters and histograms have a fixed field set, time series and the
 * samples ring are trimmed on write, heartbeats expire, and the run registry keeps the newest
 * `maxRuns` runs (older runs' keys are deleted when a new run registers).
 *
 * P = <prefix>:stats
 *   P:runs                       ZSET   runId → startedAt (ms)
 *   P:run:{<id>}:meta            HASH   RunMeta fields (strings; JSON for arrays)
 *   P:run:{<id>}:c               HASH   counters (see `counterFields`)
 *   P:run:{<id>}:h               HASH   "<score>:<source>:<bucket>" → count; CLIP scores as
 *                                       "clip:<kept|dropped>:<bucket>" (the text's decision)
 *   P:run:{<id>}:ts:<stage>      HASH   "<bucket start, unix s>" → rows finished in that bucket
 *   P:run:{<id>}:samples         LIST   SampleEntry JSON, newest first
 *   P:run:{<id>}:shards:<stage>  SET    shard ids already counted (makes retries idempotent)
 *   P:{workers}                  ZSET   workerId → last heartbeat (ms)
 *   P:{workers}:info             HASH   workerId → last WorkerInfo JSON (kept while in P:{workers})
 *   P:{workers}:<id>             STRING WorkerInfo JSON, expires after the heartbeat TTL
 */
import type { RowStatus, ScoreName, TextSource } from '../core/records.ts';
import { STAGE_ORDER } from '../core/shard.ts';

export const DEFAULT_PREFIX = 'capfilt';

/** The pipeline's stages in data-path order (the stage table's names); other stage names are accepted and shown too. */
export const STAGES = STAGE_ORDER;

export type { ScoreName };

export interface HistogramSpec {
  min: number;
  max: number;
  buckets: number;
}

/**
 * ITM P(match) lives in [0, 1]; ITC is a cosine in [-1, 1], so it gets twice the buckets to
 * keep the same bucket width (0.02). The default ITM threshold 0.5 falls on a bucket edge, so
 * kept % recomputed from the histogram is exact there.
 */
export const HISTOGRAMS: Record<ScoreName, HistogramSpec> = {
  itm: { min: 0, max: 1, buckets: 50 },
  itc: { min: -1, max: 1, buckets: 100 },
};

/** The CLIP score (a cosine, the clip stage's) by decision: the same buckets as ITC. */
export const CLIP_HISTOGRAM: HistogramSpec = { min: -1, max: 1, buckets: 100 };

/** Bucket of a value; thresholds use the same function so that "≥ t" matches bucket edges. */
export function bucketOf(spec: HistogramSpec, value: number): number {
  const x = ((value - spec.min) / (spec.max - spec.min)) * spec.buckets;
  return Math.min(spec.buckets - 1, Math.max(0, Math.floor(x + 1e-9)));
}

/** Kept fraction if the threshold were `t`: texts with a score ≥ t over all texts (bucket-exact at edges). */
export function keptAtThreshold(spec: HistogramSpec, counts: readonly number[], t: number): { kept: number; total: number } {
  const from = Math.ceil(((t - spec.min) / (spec.max - spec.min)) * spec.buckets - 1e-9);
  let kept = 0;
  let total = 0;
  counts.forEach((n, i) => { total += n; if (i >= from) kept += n; });
  return { kept, total };
}

export function keys(deploymentPrefix: string) {
  const prefix = `${deploymentPrefix}:stats`;
  // Hash tags: a run's keys share one cluster slot (one script updates several of them), and so
  // do the worker heartbeat keys (one MULTI writes them); the two groups spread apart.
  const run = (id: string) => `${prefix}:run:{${id}}`;
  const workers = `${prefix}:{workers}`;
  return {
    runs: `${prefix}:runs`,
    /** Every key of a run, given the stages it has recorded rows for. */
    runKeys: (id: string, stages: readonly string[]) => [
      `${run(id)}:meta`, `${run(id)}:c`, `${run(id)}:h`, `${run(id)}:samples`,
      ...stages.flatMap((s) => [`${run(id)}:ts:${s}`, `${run(id)}:shards:${s}`]),
    ],
    meta: (id: string) => `${run(id)}:meta`,
    counters: (id: string) => `${run(id)}:c`,
    hist: (id: string) => `${run(id)}:h`,
    series: (id: string, stage: string) => `${run(id)}:ts:${stage}`,
    samples: (id: string) => `${run(id)}:samples`,
    shards: (id: string, stage: string) => `${run(id)}:shards:${stage}`,
    workers,
    workerInfo: `${workers}:info`,
    worker: (id: string) => `${workers}:${id}`,
  };
}

/**
 * Counter field names in `P:run:<id>:c`. Stage counters count every recordRows call; "final"
 * counters count rows once, when their shard is written (the terminal call).
 */
export const counterFields = {
  stageRows: (stage: string) => `stage:${stage}:rows`,
  stageStatus: (stage: string, status: RowStatus) => `stage:${stage}:${status}`,
  stageShards: (stage: string) => `stage:${stage}:shards`,
  stageFailReason: (stage: string, reason: string) => `stagefail:${stage}:${reason}`,
  done: 'done',
  final: (status: RowStatus) => `final:${status}`,
  reason: (status: RowStatus, reason: string) => `reason:${status}:${reason}`,
  texts: (source: TextSource, kept: boolean) => `texts:${source}:${kept ? 'kept' : 'dropped'}`,
  /** Texts the named decision rule rejected (itm, itc, clip, top): per-rule filter rates. */
  rule: (rule: string) => `rule:${rule}`,
  /** Rows whose top zero-shot label is this (clip.labels): one field per class that came top, bounded by the labels file. */
  label: (label: string) => `label:${label}`,
  /** Kept rows written to embeddings/ (clip.saveEmbeddings). */
  embeddingsWritten: 'embeddings:written',
  imagesScored: 'images:scored',
  imagesAnyKept: 'images:anyKept',
  shardsDone: 'shards:done',
} as const;

export interface RunMeta {
  runId: string;
  /** Input file or folder as the user gave it. */
  input: string;
  /** Total input rows once planned; null while unknown. */
  totalRows: number | null;
  totalShards: number | null;
  startedAt: number;
  finishedAt: number | null;
  /** 'running' | 'finished' | 'failed' | 'cancelled' */
  state: string;
  stages: string[];
  /** BullMQ queue prefix and queue names of the run, so the dashboard can show their depth. */
  queuePrefix: string | null;
  queues: Record<string, string>;
  itmThreshold: number | null;
  itcThreshold: number | null;
  /** clip.minScore of a run with the clip stage (null: no CLIP rule). */
  clipMinScore: number | null;
  out: string | null;
  /** Free-form labels (model ids, host) shown on the page. */
  labels: Record<string, string>;
  /** Width of the throughput buckets in seconds (the writer's `seriesBucketSec`). */
  bucketSec: number;
}

/** A scored text as the dashboard shows it: text, source, every score by name, kept. */
export type SampleScore = { text: string; source: TextSource } & Record<ScoreName, number> & { kept: boolean; clip?: number };

export interface SampleEntry {
  key: string;
  shardId: string | null;
  at: number;
  url: string | null;
  status: RowStatus;
  reason: string | null;
  reasonDetail: string | null;
  /** Ground-truth noise label when the input carries one (the demo generator does). */
  noise: string | null;
  text: string | null;
  captions: string[];
  scores: SampleScore[];
  selected: string | null;
  /** Zero-shot labels, best first, when the run labels images (clip.labels). */
  labels?: { label: string; prob: number }[];
  /** `data:image/jpeg;base64,...`, at most THUMBNAIL_MAX_BYTES of JPEG; null without an image. */
  thumb: string | null;
  width: number | null;
  height: number | null;
}

export interface WorkerInfo {
  id: string;
  host: string;
  pid: number;
  stages: string[];
  device: string;
  /** Rows per second through this worker: the busiest of its stages over the last minute. */
  rowsPerSec: number;
  /** Per-stage rows per second over the last minute. */
  stageRates: Record<string, number>;
  rowsTotal: number;
  concurrency: number | null;
  runId: string | null;
  startedAt: number;
  lastSeen: number;
  /** The writer's heartbeat TTL: the worker counts as lost once `lastSeen` is older than this. */
  ttlMs: number;
  metricsUrl: string | null;
}

export const THUMBNAIL_MAX_BYTES = 8 * 1024;
