import { hostname } from 'node:os';
import type { RedisClient } from '../core/redis.ts';
import { realClock, type Clock } from '../core/clock.ts';
import { SCORE_NAMES, scoreOf, type RowRecord, type RowStatus } from '../core/records.ts';
import type { CapfiltMetrics } from './metrics.ts';
import {
  CLIP_HISTOGRAM, DEFAULT_PREFIX, HISTOGRAMS, STAGES, bucketOf, counterFields, keys,
  type RunMeta, type SampleEntry, type SampleScore, type WorkerInfo,
} from './stats-schema.ts';
import { thumbnailDataUrl } from './thumbnail.ts';

export * from './stats-schema.ts';
export { StatsReader } from './stats-reader.ts';

/**
 * Writes live run statistics to Redis (layout in stats-schema.ts). Workers call `recordRows`
 * once per shard per stage; each call is one atomic Lua script (one round trip), and with a
 * `shardId` it is idempotent, so a retried job does not count its rows twice.
 */
export interface StatsWriterOptions {
  /** Caller-owned connection; the writer never closes it. */
  redis: RedisClient;
  /** Deployment prefix (config `redis.prefix`, default `capfilt`); keys go under `<prefix>:stats:`. */
  prefix?: string;
  /** Samples kept per run (newest first); with ≤ 8 KB thumbnails, at most ~1.4 MB per run. Default 120. */
  maxSamples?: number;
  /** Samples taken from each written shard, spread over kept / filtered / failed. Default 6. */
  samplesPerShard?: number;
  /** Width of a throughput bucket in seconds. Default 5. */
  seriesBucketSec?: number;
  /** Throughput buckets kept per stage (default 720: one hour of 5 s buckets). */
  seriesMaxPoints?: number;
  /** Runs kept in the registry; registering more deletes the oldest runs' keys. Default 20. */
  maxRuns?: number;
  /** A worker not heard from for this long is gone. Default 15 s. */
  heartbeatTtlMs?: number;
  /** Prometheus metrics updated by the same calls (typically `processMetrics()`). */
  metrics?: CapfiltMetrics | null;
  /** The time stamped on runs, rows and heartbeats when the caller gives none; the real clock by default. */
  clock?: Clock;
}

export interface RecordRowsOptions {
  /** Shard id: repeated calls for the same (run, stage, shard) are counted once. */
  shardId?: string;
  /**
   * Rows are final (their shard was written): count statuses, reasons, filter decisions,
   * histograms and take samples. Defaults to `stage === 'write'`.
   */
  final?: boolean;
  /** Encoded image bytes of a record (from the staging store) for sample thumbnails. */
  loadImage?: (record: RowRecord) => Promise<Uint8Array | null>;
  /** Ground-truth noise label of a record. Default: `extra.noise`, `extra.noise_label` or `extra.label`. */
  noiseOf?: (record: RowRecord) => string | null;
  /** Time the rows finished the stage (ms). Default now. */
  at?: number;
}

export interface RegisterRunInput extends Partial<Omit<RunMeta, 'runId' | 'input'>> {
  runId: string;
  input: string;
}

export interface HeartbeatInput {
  /** Stable per process; default `${host}:${pid}`. */
  id?: string;
  host?: string;
  pid?: number;
  stages: string[];
  device?: string;
  concurrency?: number | null;
  runId?: string | null;
  metricsUrl?: string | null;
  /** Overrides the rate the writer measured from its own recordRows calls. */
  rowsPerSec?: number;
}

// KEYS: 1 shard set, 2 counters, 3 histograms, 4 stage series, 5 samples list, 6 run meta
// ARGV: 1 shard id ('' = no dedup), 2 #counter pairs, 3 series bucket, 4 series count,
//       5 series max points, 6 max samples, 7 now ms, then counter field/increment pairs,
//       then histogram field/increment pairs (count in ARGV[8 + 2*#counters]), then samples.
// Output: 1 when counted, 0 when this shard was already counted for this stage.
const RECORD_SCRIPT = `
if ARGV[1] ~= '' then
  if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
end
local nc = tonumber(ARGV[2])
local i = 8
for _ = 1, nc do
  redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1])
  i = i + 2
end
local nh = tonumber(ARGV[i])
i = i + 1
for _ = 1, nh do
  redis.call('HINCRBY', KEYS[3], ARGV[i], ARGV[i + 1])
  i = i + 2
end
if tonumber(ARGV[4]) > 0 then
  redis.call('HINCRBY', KEYS[4], ARGV[3], ARGV[4])
  local maxp = tonumber(ARGV[5])
  if redis.call('HLEN', KEYS[4]) > maxp + 16 then
    local fields = redis.call('HKEYS', KEYS[4])
    table.sort(fields, function(a, b) return tonumber(a) < tonumber(b) end)
    for j = 1, #fields - maxp do redis.call('HDEL', KEYS[4], fields[j]) end
  end
end
local ns = 0
while i <= #ARGV do
  redis.call('LPUSH', KEYS[5], ARGV[i])
  i = i + 1
  ns = ns + 1
end
if ns > 0 then redis.call('LTRIM', KEYS[5], 0, tonumber(ARGV[6]) - 1) end
redis.call('HSET', KEYS[6], 'updatedAt', ARGV[7])
return 1
`;

/** Rows per second over a sliding window, per stage, for this process's heartbeats. */
class RateMeter {
  private readonly events = new Map<string, Array<[number, number]>>();
  private readonly totals = new Map<string, number>();
  constructor(private readonly windowMs = 60_000) {}

  add(stage: string, n: number, at: number): void {
    const list = this.events.get(stage) ?? [];
    list.push([at, n]);
    this.events.set(stage, list);
    this.totals.set(stage, (this.totals.get(stage) ?? 0) + n);
  }

  rates(now: number): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [stage, list] of this.events) {
      while (list.length && list[0][0] < now - this.windowMs) list.shift();
      if (!list.length) { out[stage] = 0; continue; }
      const rows = list.reduce((a, [, n]) => a + n, 0);
      // A worker that started 5 s ago has 5 s of history, not a full window.
      const span = Math.max(1000, Math.min(this.windowMs, now - list[0][0] + 1000));
      out[stage] = rows / (span / 1000);
    }
    return out;
  }

  total(): number {
    return Math.max(0, ...this.totals.values());
  }
}

/** The first string among the input columns `noise`, `noise_label`, `label` (saveAdditionalColumns). */
function noiseFromExtra(r: RowRecord): string | null {
  for (const k of ['noise', 'noise_label', 'label']) {
    const v = r.extra?.[k];
    if (typeof v === 'string' && v) return v;
  }
  return null;
}

/** Up to n rows, round-robin over kept / filtered / failed, in a key-hash order (deterministic). */
export function pickSamples(records: readonly RowRecord[], n: number): RowRecord[] {
  if (n <= 0) return [];
  const hash = (s: string) => { let h = 2166136261; for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619); return h >>> 0; };
  const groups = new Map<RowStatus, RowRecord[]>();
  for (const r of records) groups.set(r.status, [...(groups.get(r.status) ?? []), r]);
  const lists = [...groups.values()].map((g) => g.sort((a, b) => hash(a.key) - hash(b.key)));
  const out: RowRecord[] = [];
  for (let round = 0; out.length < n && lists.some((l) => l.length > round); round++) {
    for (const l of lists) if (round < l.length && out.length < n) out.push(l[round]);
  }
  return out;
}

export class StatsWriter {
  readonly prefix: string;
  private readonly redis: RedisClient;
  private readonly k: ReturnType<typeof keys>;
  private readonly o: Required<Omit<StatsWriterOptions, 'redis' | 'prefix' | 'metrics' | 'clock'>>;
  private readonly metrics: CapfiltMetrics | null;
  private readonly clock: Clock;
  private readonly meter = new RateMeter();

  constructor(opts: StatsWriterOptions) {
    this.redis = opts.redis;
    this.prefix = opts.prefix ?? DEFAULT_PREFIX;
    this.k = keys(this.prefix);
    this.metrics = opts.metrics ?? null;
    this.clock = opts.clock ?? realClock;
    this.o = {
      maxSamples: opts.maxSamples ?? 120,
      samplesPerShard: opts.samplesPerShard ?? 6,
      seriesBucketSec: opts.seriesBucketSec ?? 5,
      seriesMaxPoints: opts.seriesMaxPoints ?? 720,
      maxRuns: opts.maxRuns ?? 20,
      heartbeatTtlMs: opts.heartbeatTtlMs ?? 15_000,
    };
  }

  /**
   * Adds or updates a run in the registry. Registering an existing id (a resumed run) updates
   * its meta and keeps its counters. The oldest runs beyond `maxRuns` are deleted.
   */
  async registerRun(input: RegisterRunInput): Promise<void> {
    const startedAt = input.startedAt ?? this.clock.now();
    const existing = await this.redis.hget(this.k.meta(input.runId), 'startedAt');
    const meta: RunMeta = {
      runId: input.runId,
      input: input.input,
      totalRows: input.totalRows ?? null,
      totalShards: input.totalShards ?? null,
      startedAt: existing ? Number(existing) : startedAt,
      finishedAt: input.finishedAt ?? null,
      state: input.state ?? 'running',
      stages: input.stages ?? [],
      queuePrefix: input.queuePrefix ?? null,
      queues: input.queues ?? {},
      itmThreshold: input.itmThreshold ?? null,
      itcThreshold: input.itcThreshold ?? null,
      clipMinScore: input.clipMinScore ?? null,
      out: input.out ?? null,
      labels: input.labels ?? {},
      bucketSec: this.o.seriesBucketSec,
    };
    // Two commands: the runs index is in another cluster slot than the run's keys.
    await this.redis.hset(this.k.meta(input.runId), encodeMeta(meta));
    await this.redis.zadd(this.k.runs, 'NX', meta.startedAt, input.runId);
    const stale = await this.redis.zrevrange(this.k.runs, this.o.maxRuns, -1);
    for (const id of stale) await this.deleteRun(id);
  }

  /** Updates some meta fields, e.g. `totalRows` once planning has counted the input. */
  async updateRun(runId: string, patch: Partial<Omit<RunMeta, 'runId'>>): Promise<void> {
    const fields = encodeMeta(patch);
    if (Object.keys(fields).length) await this.redis.hset(this.k.meta(runId), fields);
  }

  async finishRun(runId: string, state: 'finished' | 'failed' | 'cancelled' = 'finished', at = this.clock.now()): Promise<void> {
    await this.updateRun(runId, { state, finishedAt: at });
  }

  /** Deletes a run's stats keys, named from its stages (no SCAN: a cluster spreads keys over nodes). */
  async deleteRun(runId: string): Promise<void> {
    const raw = await this.redis.hget(this.k.meta(runId), 'stages');
    const recorded = raw ? (JSON.parse(raw) as string[]) : [];
    await this.redis.del(...this.k.runKeys(runId, [...new Set([...STAGES, ...recorded])]));
    await this.redis.zrem(this.k.runs, runId);
  }

  /**
   * Counts a shard's records after `stage`. Returns whether the call was counted (false when the
   * same shardId was already counted for this stage) and how many samples were stored.
   */
  async recordRows(runId: string, stage: string, records: readonly RowRecord[], opts: RecordRowsOptions = {}): Promise<{ counted: boolean; samples: number }> {
    const at = opts.at ?? this.clock.now();
    const final = opts.final ?? stage === 'write';
    const counters = new Map<string, number>();
    const inc = (f: string, n = 1) => counters.set(f, (counters.get(f) ?? 0) + n);
    const hist = new Map<string, number>();

    inc(counterFields.stageRows(stage), records.length);
    inc(counterFields.stageShards(stage));
    for (const r of records) inc(counterFields.stageStatus(stage, r.status));

    let samples: string[] = [];
    if (final) {
      inc(counterFields.done, records.length);
      inc(counterFields.shardsDone);
      for (const r of records) {
        inc(counterFields.final(r.status));
        if (r.status !== 'kept' && r.status !== 'pending') inc(counterFields.reason(r.status, r.reason ?? 'UNKNOWN'));
        if (r.scores.length) inc(counterFields.imagesScored);
        if (r.labels?.length) inc(counterFields.label(r.labels[0].label));
        if (r.status === 'kept' && r.clipEmbedding) inc(counterFields.embeddingsWritten);
        if (r.scores.some((s) => s.kept)) inc(counterFields.imagesAnyKept);
        for (const s of r.scores) {
          inc(counterFields.texts(s.source, s.kept));
          for (const rule of s.rejectedBy ?? []) inc(counterFields.rule(rule));
          const clip = scoreOf(s, 'clip');
          if (clip !== undefined && Number.isFinite(clip)) {
            const f = `clip:${s.kept ? 'kept' : 'dropped'}:${bucketOf(CLIP_HISTOGRAM, clip)}`;
            hist.set(f, (hist.get(f) ?? 0) + 1);
          }
          for (const score of SCORE_NAMES) {
            const v = s[score];
            if (!Number.isFinite(v)) continue;
            const f = `${score}:${s.source}:${bucketOf(HISTOGRAMS[score], v)}`;
            hist.set(f, (hist.get(f) ?? 0) + 1);
          }
        }
      }
      samples = await this.buildSamples(records, opts, at);
    }

    const bucket = Math.floor(at / 1000 / this.o.seriesBucketSec) * this.o.seriesBucketSec;
    const argv: (string | number)[] = [
      opts.shardId ?? '', counters.size, bucket, records.length, this.o.seriesMaxPoints, this.o.maxSamples, at,
    ];
    for (const [f, n] of counters) argv.push(f, n);
    argv.push(hist.size);
    for (const [f, n] of hist) argv.push(f, n);
    argv.push(...samples);
    const counted = (await this.redis.eval(
      RECORD_SCRIPT, 6,
      this.k.shards(runId, stage), this.k.counters(runId), this.k.hist(runId),
      this.k.series(runId, stage), this.k.samples(runId), this.k.meta(runId),
      ...argv,
    )) === 1;
    if (counted) {
      this.meter.add(stage, records.length, at);
      this.metrics?.observeRows(stage, records, final);
    }
    return { counted, samples: counted ? samples.length : 0 };
  }

  private async buildSamples(records: readonly RowRecord[], opts: RecordRowsOptions, at: number): Promise<string[]> {
    const picked = pickSamples(records, Math.min(this.o.samplesPerShard, this.o.maxSamples));
    const noiseOf = opts.noiseOf ?? noiseFromExtra;
    return Promise.all(picked.map(async (r) => {
      let thumb: string | null = null;
      if (r.image && opts.loadImage) {
        const bytes = await opts.loadImage(r).catch(() => null);
        if (bytes) thumb = await thumbnailDataUrl(bytes);
      }
      const entry: SampleEntry = {
        key: r.key,
        shardId: opts.shardId ?? null,
        at,
        url: r.url,
        status: r.status,
        reason: r.reason,
        reasonDetail: r.reasonDetail,
        noise: noiseOf(r),
        text: r.text,
        captions: r.captions,
        scores: r.scores.map((s) => {
          const clip = scoreOf(s, 'clip');
          return { text: s.text, source: s.source, ...Object.fromEntries(SCORE_NAMES.map((n) => [n, s[n]])), kept: s.kept, ...(clip === undefined ? {} : { clip }) } as SampleScore;
        }),
        selected: r.selected,
        ...(r.labels?.length ? { labels: r.labels } : {}),
        thumb,
        width: r.image?.originalWidth ?? null,
        height: r.image?.originalHeight ?? null,
      };
      return JSON.stringify(entry);
    }));
  }

  /** Publishes this worker's liveness; the entry expires after `heartbeatTtlMs`. */
  async heartbeat(input: HeartbeatInput): Promise<WorkerInfo> {
    const now = this.clock.now();
    const host = input.host ?? hostname();
    const pid = input.pid ?? process.pid;
    const id = input.id ?? `${host}:${pid}`;
    const stageRates = this.meter.rates(now);
    const measured = Math.max(0, ...Object.values(stageRates));
    const prev = await this.redis.get(this.k.worker(id));
    const info: WorkerInfo = {
      id, host, pid,
      stages: input.stages,
      device: input.device ?? 'cpu',
      rowsPerSec: input.rowsPerSec ?? measured,
      stageRates,
      rowsTotal: this.meter.total(),
      concurrency: input.concurrency ?? null,
      runId: input.runId ?? null,
      startedAt: prev ? (JSON.parse(prev) as WorkerInfo).startedAt : now,
      lastSeen: now,
      ttlMs: this.o.heartbeatTtlMs,
      metricsUrl: input.metricsUrl ?? null,
    };
    // Workers that vanished without a goodbye stay listed (as lost) for 10 TTLs, then go.
    const json = JSON.stringify(info);
    const cutoff = now - 10 * this.o.heartbeatTtlMs;
    const gone = (await this.redis.zrangebyscore(this.k.workers, '-inf', cutoff)).filter((g) => g !== id);
    const tx = this.redis.multi()
      .set(this.k.worker(id), json, 'PX', this.o.heartbeatTtlMs)
      .zadd(this.k.workers, now, id)
      .hset(this.k.workerInfo, id, json);
    if (gone.length) tx.zrem(this.k.workers, ...gone).hdel(this.k.workerInfo, ...gone);
    await tx.exec();
    return info;
  }

  /**
   * Heartbeats every `intervalMs` (default a third of the TTL) until `stop()`, which removes the
   * worker's entry so that a clean exit is not shown as a lost worker.
   */
  startHeartbeat(input: HeartbeatInput, intervalMs = Math.floor(this.o.heartbeatTtlMs / 3)): { stop(): Promise<void> } {
    const id = input.id ?? `${input.host ?? hostname()}:${input.pid ?? process.pid}`;
    const beat = () => this.heartbeat({ ...input, id }).catch(() => undefined);
    void beat();
    const timer = setInterval(beat, intervalMs);
    timer.unref();
    return {
      stop: async () => {
        clearInterval(timer);
        await this.redis.multi().del(this.k.worker(id)).zrem(this.k.workers, id).hdel(this.k.workerInfo, id).exec();
      },
    };
  }
}

function encodeMeta(m: Partial<RunMeta>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(m)) {
    if (v === undefined) continue;
    out[k] = v === null ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v);
  }
  return out;
}
