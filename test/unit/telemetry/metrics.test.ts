import { describe, expect, it } from 'vitest';
import { isCapfiltError } from '../../../src/core/errors.ts';
import { createMetrics, serveMetrics } from '../../../src/telemetry/metrics.ts';
import { demoRecord } from '../../helpers/dashboard-fixtures.ts';
import { ManualClock } from '../../helpers/manual-clock.ts';

describe('worker metrics', () => {
  it('counts rows, failures, texts and kept ratios, times model calls and reads queue depth at scrape', async () => {
    const clock = new ManualClock();
    const m = createMetrics({ labels: { role: 'worker' }, clock });
    const rows = Array.from({ length: 60 }, (_, i) => demoRecord(5, i).record);
    m.observeRows('filter', rows, false);
    m.observeRows('write', rows, true);
    // A model call that takes 20 ms of the clock's time.
    await m.timeModel('filter', 'itm', () => clock.advance(20));
    m.setQueueDepthSource(async () => [{ queue: 'caption', state: 'waiting', count: 7 }]);
    const text = await m.registry.metrics();
    const kept = rows.filter((r) => r.status === 'kept').length;
    const failed = rows.filter((r) => r.status === 'failed');
    expect(text).toContain(`capfilt_rows_total{stage="write",status="kept",role="worker"} ${kept}`);
    for (const reason of new Set(failed.map((r) => r.reason))) {
      expect(text).toContain(`capfilt_failures_total{reason="${reason}",role="worker"} ${failed.filter((r) => r.reason === reason).length}`);
    }
    const web = rows.flatMap((r) => r.scores).filter((s) => s.source === 'web');
    const ratio = web.filter((s) => s.kept).length / web.length;
    const line = text.split('\n').find((l) => l.startsWith('capfilt_kept_ratio{source="web"'));
    expect(Number(line!.split(' ').pop())).toBeCloseTo(ratio, 10);
    expect(text).toMatch(/capfilt_model_latency_seconds_count\{[^}]*model="filter",op="itm"[^}]*\} 1\n/);
    expect(text).toMatch(/capfilt_model_latency_seconds_sum\{[^}]*model="filter",op="itm"[^}]*\} 0\.02\n/);
    expect(text).toMatch(/capfilt_model_latency_seconds_bucket\{le="0\.01",[^}]*model="filter",op="itm"[^}]*\} 0\n/);
    expect(text).toMatch(/capfilt_model_latency_seconds_bucket\{le="0\.025",[^}]*model="filter",op="itm"[^}]*\} 1\n/);
    expect(text).toContain('capfilt_queue_depth{queue="caption",state="waiting",role="worker"} 7');
    expect(text).toContain('nodejs_eventloop_lag_seconds');
  });

  it('serves /metrics over HTTP on 127.0.0.1 and reports a taken port as a coded error', async () => {
    const m = createMetrics();
    m.observeRows('download', [demoRecord(1, 0).record], false);
    const server = await serveMetrics({ port: 0, metrics: m });
    try {
      const res = await fetch(server.url);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toContain('text/plain');
      expect(await res.text()).toContain('capfilt_rows_total');
      expect((await fetch(server.url.replace('/metrics', '/other'))).status).toBe(404);
      const err = await serveMetrics({ port: server.port, metrics: m }).catch((e: unknown) => e);
      expect(isCapfiltError(err, 'METRICS_LISTEN_FAILED')).toBe(true);
    } finally {
      await server.close();
    }
  });
});
