import cliProgress from 'cli-progress';
import type { Logger } from 'pino';
import { realClock, type Clock } from '../core/clock.ts';
import type { RunTotals } from '../pipeline/run-state.ts';

/**
 * Run progress: a bar on a terminal (rows/s, ETA, kept %), JSON log lines otherwise (one every
 * `intervalMs`), nothing when asked. Rates are measured over the rows processed by this run
 * invocation, not the rows skipped because their output already existed, over the time of `clock`.
 */
export type ProgressMode = 'bar' | 'json' | 'none';

export interface Progress {
  update(totals: RunTotals, extra: { inFlight: number; skippedRows: number }): void;
  stop(): void;
}

export function progressMode(requested: 'auto' | ProgressMode, stream: NodeJS.WriteStream = process.stderr): ProgressMode {
  if (requested !== 'auto') return requested;
  return stream.isTTY ? 'bar' : 'json';
}

export function createProgress(mode: ProgressMode, totalRows: number, log: Logger, intervalMs = 2000, clock: Clock = realClock): Progress {
  const t0 = clock.now();
  const rate = (done: number, skipped: number) => (done - skipped) / Math.max(0.001, (clock.now() - t0) / 1000);
  const keptPct = (t: RunTotals) => (t.rows ? (100 * t.kept) / t.rows : 0);
  if (mode === 'bar') {
    const bar = new cliProgress.SingleBar(
      {
        format: 'capfilt |{bar}| {value}/{total} rows | {rps} rows/s | ETA {eta_formatted} | kept {kept}% | failed {failed} | in flight {inflight}',
        etaBuffer: 50,
        hideCursor: true,
        stream: process.stderr,
      },
      cliProgress.Presets.shades_classic,
    );
    bar.start(totalRows, 0, { rps: '0', kept: '0.0', failed: 0, inflight: 0 });
    return {
      update(t, x) {
        bar.update(t.rows, { rps: rate(t.rows, x.skippedRows).toFixed(1), kept: keptPct(t).toFixed(1), failed: t.failed, inflight: x.inFlight });
      },
      stop: () => bar.stop(),
    };
  }
  if (mode === 'json') {
    let last = 0;
    return {
      update(t, x) {
        const now = clock.now();
        if (now - last < intervalMs && t.rows < totalRows) return;
        last = now;
        const rps = rate(t.rows, x.skippedRows);
        log.info({ progress: { rows: t.rows, totalRows, kept: t.kept, filtered: t.filtered, failed: t.failed, shards: t.shards, inFlight: x.inFlight, rowsPerSec: Number(rps.toFixed(2)), etaSec: rps > 0 ? Math.round((totalRows - t.rows) / rps) : null, keptPct: Number(keptPct(t).toFixed(2)) } }, 'progress');
      },
      stop() {},
    };
  }
  return { update() {}, stop() {} };
}
