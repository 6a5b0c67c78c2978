import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type { RunTotals } from '../../../src/pipeline/run-state.ts';
import { StageRates, createProgress, stageLine } from '../../../src/run/progress.ts';
import { ManualClock } from '../../helpers/manual-clock.ts';

function capture() {
  const lines: Array<{ progress: Record<string, number | null> }> = [];
  const log = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  return { log, lines };
}
const totals = (rows: number, failed = 0): RunTotals => ({ rows, kept: rows - failed, filtered: 0, failed, shards: Math.floor(rows / 10) });

describe('run progress (json)', () => {
  it('logs at most once per interval, and always the last row, with rows/s over this invocation and the ETA', async () => {
    const clock = new ManualClock(1_000_000);
    const { log, lines } = capture();
    const p = createProgress('json', 100, log, 2000, clock);
    await clock.advance(1000);
    p.update(totals(10, 1), { inFlight: 2, skippedRows: 0 });
    expect(lines.map((l) => l.progress)).toEqual([
      { rows: 10, totalRows: 100, kept: 9, filtered: 0, failed: 1, shards: 1, inFlight: 2, rowsPerSec: 10, etaSec: 9, keptPct: 90 },
    ]);
    await clock.advance(1999);
    p.update(totals(30), { inFlight: 2, skippedRows: 0 });
    expect(lines).toHaveLength(1);
    await clock.advance(1);
    p.update(totals(40), { inFlight: 2, skippedRows: 0 });
    expect(lines[1].progress).toMatchObject({ rows: 40, rowsPerSec: 13.33, etaSec: 5 });
    // The last row is logged at once, whatever the interval.
    await clock.advance(1);
    p.update(totals(100), { inFlight: 0, skippedRows: 0 });
    expect(lines[2].progress).toMatchObject({ rows: 100, etaSec: 0 });
  });

  it('counts only the rows this invocation processed, not the ones skipped as already written', async () => {
    const clock = new ManualClock(5_000);
    const { log, lines } = capture();
    const p = createProgress('json', 200, log, 2000, clock);
    await clock.advance(4000);
    p.update(totals(120), { inFlight: 1, skippedRows: 100 });
    // 20 rows in 4 s; the 80 left at 5 rows/s.
    expect(lines[0].progress).toMatchObject({ rows: 120, rowsPerSec: 5, etaSec: 16 });
  });
});

describe('per-stage rates', () => {
  it('are each stage\'s rows/s over the last 10 s window, in the run\'s stage order', async () => {
    const clock = new ManualClock(0);
    const r = new StageRates(clock);
    await clock.advance(2000);
    expect(r.add({ download: 40, write: 0 })).toEqual({ download: 20, write: 0 });
    await clock.advance(8000);
    expect(r.add({ download: 100, write: 50 })).toEqual({ download: 10, write: 5 });
    // The window slides: the first samples drop out, so a stage that stopped falls to 0.
    await clock.advance(10_000);
    expect(r.add({ download: 100, write: 150 })).toEqual({ download: 0, write: 10 });
    // While busy: download from 0 s to 10 s (100 rows), write from 2 s (last seen at 0) to 20 s (150 rows).
    expect(r.activeRates()).toEqual({ download: 10, write: 150 / 18 });
    expect(stageLine(['download', 'caption', 'filter', 'write'], { write: 1.25, download: 3, filter: 2 })).toBe('download 3.0/s · filter 2.0/s · write 1.3/s');
  });

  it('go into the JSON progress lines when the run passes stage counts', async () => {
    const clock = new ManualClock(0);
    const { log, lines } = capture();
    const p = createProgress('json', 100, log, 2000, clock, ['download', 'write']);
    await clock.advance(4000);
    p.update(totals(20), { inFlight: 1, skippedRows: 0, stages: { download: 40, write: 20 } });
    expect(lines[0].progress).toMatchObject({ rows: 20, stageRowsPerSec: { download: 10, write: 5 } });
  });
});
