import { Gauge } from 'prom-client';
import { createMetrics, type CapfiltMetrics } from '../telemetry/metrics.ts';
import type { StatsReader } from '../telemetry/stats-reader.ts';
import type { QueueWatcher } from './queues.ts';

/**
 * The dashboard's `/metrics`: run-level figures read from Redis at scrape time (one Prometheus
 * target sees every worker's work), queue depth, live workers per stage, plus this process's
 * default metrics. Gauges, not counters, because they mirror Redis values that a new run resets.
 */
export function createRunMetrics(reader: StatsReader, queues: QueueWatcher, maxRuns = 5): CapfiltMetrics {
  const metrics = createMetrics({ labels: { role: 'dashboard' } });
  const registers = [metrics.registry];
  metrics.setQueueDepthSource(async () => (await queues.depths()).flatMap((q) =>
    Object.entries(q.counts).map(([state, count]) => ({ queue: q.queue, state, count }))));

  const rows = new Gauge({ name: 'capfilt_run_rows', help: 'Rows of a run by stage and row status after that stage', labelNames: ['run', 'stage', 'status'] as const, registers, collect: () => refresh() });
  const progress = new Gauge({ name: 'capfilt_run_progress_ratio', help: 'Rows written over total rows', labelNames: ['run'] as const, registers, collect: () => refresh() });
  const rate = new Gauge({ name: 'capfilt_run_rows_per_second', help: 'Rows written per second over the last minute', labelNames: ['run'] as const, registers, collect: () => refresh() });
  const failures = new Gauge({ name: 'capfilt_run_failures', help: 'Failed rows of a run by reason code', labelNames: ['run', 'reason'] as const, registers, collect: () => refresh() });
  const kept = new Gauge({
    name: 'capfilt_run_kept_ratio', help: 'Kept fraction of scored texts by source (web, synthetic); image_any: images with at least one kept text',
    labelNames: ['run', 'source'] as const, registers, collect: () => refresh(),
  });
  const workers = new Gauge({ name: 'capfilt_workers_live', help: 'Workers with a fresh heartbeat, by stage', labelNames: ['stage'] as const, registers, collect: () => refresh() });

  // prom-client collects all metrics concurrently; one Redis read per scrape feeds every gauge.
  let pending: Promise<void> | null = null;
  let startedAt = 0;
  function refresh(): Promise<void> {
    if (pending && Date.now() - startedAt < 500) return pending;
    startedAt = Date.now();
    pending = read();
    return pending;
  }

  async function read(): Promise<void> {
    const runs = await reader.listRuns(maxRuns);
    const snaps = (await Promise.all(runs.map((r) => reader.run(r.meta.runId)))).filter((s) => s !== null);
    const live = (await reader.workers()).filter((w) => w.live);
    for (const g of [rows, progress, rate, failures, kept, workers]) g.reset();
    for (const snap of snaps) {
      const run = snap.meta.runId;
      for (const [stage, s] of Object.entries(snap.counters.stages)) {
        for (const [status, n] of Object.entries(s.statuses)) rows.set({ run, stage, status }, n ?? 0);
      }
      progress.set({ run }, snap.meta.totalRows ? snap.counters.done / snap.meta.totalRows : 0);
      rate.set({ run }, snap.rowsPerSec);
      for (const [reason, n] of Object.entries(snap.counters.failedReasons)) failures.set({ run, reason }, n);
      for (const [source, t] of Object.entries(snap.counters.texts)) kept.set({ run, source }, t.total ? t.kept / t.total : 0);
      if (snap.counters.imagesScored) kept.set({ run, source: 'image_any' }, snap.counters.imagesAnyKept / snap.counters.imagesScored);
    }
    for (const w of live) for (const s of w.stages) workers.inc({ stage: s });
  }
  return metrics;
}
