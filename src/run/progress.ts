import cliProgress from 'cli-progress';
import type { RedisClient } from '../core/redis.ts';
import type { Logger } from 'pino';
import { realClock, type Clock } from '../core/clock.ts';
import { logFormat } from '../core/logger.ts';
import type { RunTotals } from '../pipeline/run-state.ts';
import { decodeCounters } from '../telemetry/stats-reader.ts';
import { keys } from '../telemetry/stats-schema.ts';

/**
 * Run progress: a bar on a terminal (rows/s, ETA, kept %, and a second line with each stage's
 * rate), JSON log lines otherwise (one every `intervalMs`), nothing when asked. Rates are
 * measured over the rows processed by this run invocation, not the rows skipped because their
 * output already existed, over the time of `clock`; stage rates over the last STAGE_WINDOW_MS.
 *
 * While the bar is drawn it owns the terminal: every write to process.stderr (this process's
 * logs, the forwarded logs of its worker threads, library warnings) is held and printed above
 * the bar at its next redraw, so no line ever lands in the middle of it.
 */
export type ProgressMode = 'bar' | 'json' | 'none';

export interface ProgressExtra {
  inFlight: number;
  skippedRows: number;
  /** Rows each stage has finished so far in this run (the stats counters), when known. */
  stages?: Record<string, number>;
}

export interface Progress {
  update(totals: RunTotals, extra: ProgressExtra): void;
  stop(): void;
}

/** auto: the bar on a terminal unless logs are JSON (`--json`), JSON lines otherwise. */
export function progressMode(requested: 'auto' | ProgressMode, stream: NodeJS.WriteStream = process.stderr): ProgressMode {
  if (requested !== 'auto') return requested;
  return stream.isTTY && logFormat() !== 'json' ? 'bar' : 'json';
}

/** Rows finished per stage, from the run's stats counters in Redis (one HGETALL of a bounded hash). */
export async function stageRowsOf(redis: RedisClient, prefix: string, runId: string): Promise<Record<string, number>> {
  const c = decodeCounters(await redis.hgetall(keys(prefix).counters(runId)));
  return Object.fromEntries(Object.entries(c.stages).map(([s, v]) => [s, v.rows]));
}

const STAGE_WINDOW_MS = 10_000;

/** Each stage's rows/s over the last window of samples. */
export class StageRates {
  private readonly samples: Array<{ t: number; rows: Record<string, number> }> = [];

  constructor(private readonly clock: Clock = realClock, private readonly windowMs = STAGE_WINDOW_MS) {
    this.samples.push({ t: clock.now(), rows: {} });
  }

  /** Per stage: when it was last seen with no rows, when its count last grew, and that count. */
  private readonly spans = new Map<string, { from: number; to: number; rows: number }>();

  add(rows: Record<string, number>): Record<string, number> {
    const now = this.clock.now();
    for (const [s, n] of Object.entries(rows)) {
      const span = this.spans.get(s) ?? { from: this.samples[this.samples.length - 1].t, to: now, rows: 0 };
      if (n === 0) span.from = now;
      else if (n > span.rows) span.to = now;
      span.rows = n;
      this.spans.set(s, span);
    }
    this.samples.push({ t: now, rows });
    while (this.samples.length > 2 && this.samples[1].t <= now - this.windowMs) this.samples.shift();
    const first = this.samples[0];
    const secs = Math.max(0.001, (now - first.t) / 1000);
    return Object.fromEntries(Object.entries(rows).map(([s, n]) => [s, Math.max(0, n - (first.rows[s] ?? 0)) / secs]));
  }

  /**
   * Each stage's rows/s over the time it was working (from its first rows to its last), which is
   * what tells the stages apart at the end of a run; a run's plain average is the same for all.
   */
  activeRates(): Record<string, number> {
    return Object.fromEntries([...this.spans].filter(([, v]) => v.rows > 0).map(([s, v]) => [s, v.rows / Math.max(0.001, (v.to - v.from) / 1000)]));
  }
}

function formatEta(sec: number | null): string {
  if (sec === null || !Number.isFinite(sec)) return '–';
  const s = Math.round(sec);
  return s >= 3600 ? `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m` : s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}

/** "download 41.0/s · caption 12.5/s · filter 30.1/s · write 29.8/s", in the run's stage order. */
export function stageLine(order: readonly string[], rates: Record<string, number>): string {
  const names = [...order.filter((s) => s in rates), ...Object.keys(rates).filter((s) => !order.includes(s))];
  return names.map((s) => `${s} ${rates[s].toFixed(1)}/s`).join(' · ');
}

/**
 * Holds every write to `stream` while the bar is drawn and hands whole lines to `sink`; the
 * returned function restores the stream and gives back a trailing partial line.
 */
function captureWrites(stream: NodeJS.WriteStream, sink: (line: string) => void): () => void {
  let pending = '';
  const capture = (chunk: unknown, enc?: unknown, cb?: unknown): boolean => {
    pending += typeof chunk === 'string' ? chunk : Buffer.from(chunk as Uint8Array).toString(typeof enc === 'string' ? (enc as BufferEncoding) : 'utf8');
    const end = pending.lastIndexOf('\n');
    if (end >= 0) {
      sink(pending.slice(0, end + 1));
      pending = pending.slice(end + 1);
    }
    const done = typeof enc === 'function' ? enc : cb;
    if (typeof done === 'function') process.nextTick(done as () => void);
    return true;
  };
  stream.write = capture as typeof stream.write;
  return () => {
    delete (stream as { write?: unknown }).write;
    if (pending) sink(pending.endsWith('\n') ? pending : `${pending}\n`);
  };
}

export function createProgress(mode: ProgressMode, totalRows: number, log: Logger, intervalMs = 2000, clock: Clock = realClock, stageOrder: readonly string[] = []): Progress {
  const t0 = clock.now();
  const rate = (done: number, skipped: number) => (done - skipped) / Math.max(0.001, (clock.now() - t0) / 1000);
  const keptPct = (t: RunTotals) => (t.rows ? (100 * t.kept) / t.rows : 0);
  const stageRates = new StageRates(clock);
  if (mode === 'bar') {
    const stderr = process.stderr;
    // The bar writes through the stream's own prototype method, past the capture below.
    const direct = Object.getPrototypeOf(stderr).write as NodeJS.WriteStream['write'];
    const terminal = {
      isTTY: true,
      get columns() {
        return stderr.columns;
      },
      write: (s: string) => direct.call(stderr, s),
    };
    const bars = new cliProgress.MultiBar(
      {
        format: 'capfilt |{bar}| {value}/{total} rows | {rps} rows/s | ETA {etaText} | kept {kept}% | failed {failed} | in flight {inflight}',
        hideCursor: true,
        clearOnComplete: false,
        barsize: 30,
        stream: terminal as unknown as NodeJS.WriteStream,
      },
      cliProgress.Presets.shades_classic,
    );
    const main = bars.create(totalRows, 0, { rps: '0.0', etaText: '–', kept: '0.0', failed: 0, inflight: 0 });
    const stagesBar = bars.create(1, 0, { stages: 'stages: starting' }, { format: '  {stages}' });
    let drawing = true;
    let lastStages: Record<string, number> | null = null;
    let restore: (() => void) | null = captureWrites(stderr, (line) => (drawing ? bars.log(line) : direct.call(stderr, line)));
    return {
      update(t, x) {
        const rps = rate(t.rows, x.skippedRows);
        main.update(t.rows, { rps: rps.toFixed(1), etaText: formatEta(t.rows >= totalRows ? 0 : rps > 0 ? (totalRows - t.rows) / rps : null), kept: keptPct(t).toFixed(1), failed: t.failed, inflight: x.inFlight });
        if (x.stages) {
          lastStages = x.stages;
          stagesBar.update(0, { stages: `stages: ${stageLine(stageOrder, stageRates.add(x.stages)) || 'starting'}` });
        }
      },
      stop() {
        if (!restore) return;
        // The last line says what each stage averaged while it worked, not its rate at the very end.
        if (lastStages) stagesBar.update(0, { stages: `stages (average while busy): ${stageLine(stageOrder, stageRates.activeRates())}` });
        // One more redraw prints the lines held since the last one above the bar, in the order they came.
        (bars as unknown as { update(): void }).update();
        bars.stop();
        drawing = false;
        restore();
        restore = null;
      },
    };
  }
  if (mode === 'json') {
    let last = 0;
    return {
      update(t, x) {
        const stageRps = x.stages ? stageRates.add(x.stages) : null;
        const now = clock.now();
        if (now - last < intervalMs && t.rows < totalRows) return;
        last = now;
        const rps = rate(t.rows, x.skippedRows);
        log.info({
          progress: {
            rows: t.rows, totalRows, kept: t.kept, filtered: t.filtered, failed: t.failed, shards: t.shards, inFlight: x.inFlight,
            rowsPerSec: Number(rps.toFixed(2)), etaSec: rps > 0 ? Math.round((totalRows - t.rows) / rps) : null, keptPct: Number(keptPct(t).toFixed(2)),
            ...(stageRps ? { stageRowsPerSec: Object.fromEntries(Object.entries(stageRps).map(([s, r]) => [s, Number(r.toFixed(2))])) } : {}),
          },
        }, 'progress');
      },
      stop() {},
    };
  }
  return { update() {}, stop() {} };
}
