import { describe, expect, it } from 'vitest';
import { stallWarnings } from '../../../src/dashboard/server.ts';
import type { StageQueue } from '../../../src/dashboard/queues.ts';
import type { WorkerView } from '../../../src/telemetry/stats-reader.ts';

const counts = (waiting: number, active = 0) => ({ waiting, active, delayed: 0, failed: 0, completed: 0, prioritized: 0, 'waiting-children': 0 });
const worker = (stages: string[], live: boolean): WorkerView => ({
  id: 'h:1', host: 'h', pid: 1, stages, device: 'cpu', rowsPerSec: 0, stageRates: {}, rowsTotal: 0,
  concurrency: 1, runId: null, startedAt: 0, lastSeen: 0, ttlMs: 15_000, metricsUrl: null, live,
});

describe('stallWarnings', () => {
  it('warns only for stages with waiting jobs and no live worker', () => {
    const queues: StageQueue[] = [
      { stage: 'download', queue: 'download', counts: counts(3) },
      { stage: 'caption', queue: 'caption', counts: counts(2) },
      { stage: 'filter', queue: 'filter', counts: counts(0, 1) },
    ];
    const w = stallWarnings(queues, [worker(['download'], true), worker(['caption'], false)]);
    expect(w).toEqual(['Stage "caption" has 2 waiting jobs but no live worker serves it.']);
  });
});
