import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { realClock, type Clock } from '../core/clock.ts';
import type { RowRecord } from '../core/records.ts';
import { CapfiltError } from '../core/errors.ts';

/**
 * Prometheus metrics of one process. Workers count what they process (rows per stage and
 * status, failures by reason, texts kept or dropped, model latency) and expose them on a small
 * HTTP server; the dashboard exposes run-level gauges read from Redis (src/dashboard/run-metrics.ts).
 * Kept rates are exported both as counters (rate() them in PromQL) and as this process's ratio.
 * Event-loop lag comes from prom-client's default metrics (`nodejs_eventloop_lag_*`), which
 * matters here because CPU-bound inference blocking the loop stalls BullMQ lock renewal.
 */
export interface QueueDepthSample {
  queue: string;
  state: string;
  count: number;
}

export type QueueDepthSource = () => Promise<QueueDepthSample[]>;

export interface CapfiltMetrics {
  readonly registry: Registry;
  readonly rows: Counter<'stage' | 'status'>;
  readonly failures: Counter<'reason'>;
  readonly texts: Counter<'source' | 'decision'>;
  readonly keptRatio: Gauge<'source'>;
  readonly modelLatency: Histogram<'model' | 'op'>;
  readonly queueDepth: Gauge<'queue' | 'state'>;
  /** Count a shard's records after `stage`; `final` rows also count failures and texts. */
  observeRows(stage: string, records: readonly RowRecord[], final: boolean): void;
  /** Time one model call (a batch), e.g. `timeModel('filter', 'itm', () => filter.score(batch))`. */
  timeModel<T>(model: string, op: string, fn: () => Promise<T>): Promise<T>;
  observeModel(model: string, op: string, seconds: number): void;
  /** Queue depth is read at scrape time from this source (replaces any earlier one). */
  setQueueDepthSource(source: QueueDepthSource | null): void;
}

export interface CreateMetricsOptions {
  /** Include prom-client's process metrics (CPU, memory, GC, event-loop lag). Default true. */
  defaultMetrics?: boolean;
  /** Static labels on every series, e.g. `{ role: 'worker', host }`. */
  labels?: Record<string, string>;
  /** Times model calls (`timeModel`); the real clock by default. */
  clock?: Clock;
}

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export function createMetrics(opts: CreateMetricsOptions = {}): CapfiltMetrics {
  const registry = new Registry();
  const clock = opts.clock ?? realClock;
  if (opts.labels) registry.setDefaultLabels(opts.labels);
  if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 20 });

  const rows = new Counter({
    name: 'capfilt_rows_total', help: 'Rows processed, by stage and row status after that stage',
    labelNames: ['stage', 'status'] as const, registers: [registry],
  });
  const failures = new Counter({
    name: 'capfilt_failures_total', help: 'Rows that ended failed, by reason code',
    labelNames: ['reason'] as const, registers: [registry],
  });
  const texts = new Counter({
    name: 'capfilt_texts_total', help: 'Scored texts by source (web, synthetic, trusted) and filter decision',
    labelNames: ['source', 'decision'] as const, registers: [registry],
  });
  const keptCounts = new Map<string, { kept: number; total: number }>();
  const keptRatio = new Gauge({
    name: 'capfilt_kept_ratio', help: 'Fraction of scored texts kept by this process, by source',
    labelNames: ['source'] as const, registers: [registry],
  });
  const modelLatency = new Histogram({
    name: 'capfilt_model_latency_seconds', help: 'Latency of one model call (a batch), by model and operation',
    labelNames: ['model', 'op'] as const, buckets: LATENCY_BUCKETS, registers: [registry],
  });
  let depthSource: QueueDepthSource | null = null;
  const queueDepth = new Gauge({
    name: 'capfilt_queue_depth', help: 'BullMQ jobs per queue and state, read at scrape time',
    labelNames: ['queue', 'state'] as const, registers: [registry],
    async collect() {
      if (!depthSource) return;
      this.reset();
      for (const s of await depthSource()) this.set({ queue: s.queue, state: s.state }, s.count);
    },
  });

  return {
    registry, rows, failures, texts, keptRatio, modelLatency, queueDepth,
    observeRows(stage, records, final) {
      const byStatus = new Map<string, number>();
      for (const r of records) byStatus.set(r.status, (byStatus.get(r.status) ?? 0) + 1);
      for (const [status, n] of byStatus) rows.inc({ stage, status }, n);
      if (!final) return;
      for (const r of records) {
        if (r.status === 'failed') failures.inc({ reason: r.reason ?? 'UNKNOWN' });
        for (const s of r.scores) {
          texts.inc({ source: s.source, decision: s.kept ? 'kept' : 'dropped' });
          const k = keptCounts.get(s.source) ?? { kept: 0, total: 0 };
          k.total += 1;
          if (s.kept) k.kept += 1;
          keptCounts.set(s.source, k);
        }
      }
      for (const [source, k] of keptCounts) keptRatio.set({ source }, k.total ? k.kept / k.total : 0);
    },
    async timeModel(model, op, fn) {
      const t0 = clock.now();
      try {
        return await fn();
      } finally {
        modelLatency.observe({ model, op }, Math.max(0, clock.now() - t0) / 1000);
      }
    },
    observeModel(model, op, seconds) {
      modelLatency.observe({ model, op }, seconds);
    },
    setQueueDepthSource(source) {
      depthSource = source;
    },
  };
}

let processMetricsInstance: CapfiltMetrics | undefined;

/** The process-wide metrics (one registry per process, so default metrics are collected once). */
export function processMetrics(): CapfiltMetrics {
  processMetricsInstance ??= createMetrics();
  return processMetricsInstance;
}

export interface MetricsServer {
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

/**
 * `/metrics` on a small HTTP server for worker processes (the dashboard serves its own).
 * Port 0 picks a free port; the chosen one is in the returned url.
 */
export async function serveMetrics(opts: { host?: string; port?: number; metrics?: CapfiltMetrics } = {}): Promise<MetricsServer> {
  const metrics = opts.metrics ?? processMetrics();
  const host = opts.host ?? '127.0.0.1';
  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    metrics.registry.metrics().then(
      (body) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(body),
      (e: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${String(e)}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => reject(new CapfiltError('METRICS_LISTEN_FAILED', `cannot serve /metrics on ${host}:${opts.port ?? 0}: ${e.message}`, { host, port: opts.port }, { cause: e })));
    server.listen(opts.port ?? 0, host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const shownHost = host.includes(':') ? `[${host}]` : host;
  return {
    url: `http://${shownHost}:${port}/metrics`,
    port,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
