import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cli } from '../helpers/cli.ts';
import { REDIS_URL, deletePrefix, uniquePrefix } from '../helpers/redis-cleanup.ts';

const prefix = uniquePrefix('clidemo');
const out = mkdtempSync(join(tmpdir(), 'capfilt-demo-e2e-'));
afterAll(async () => {
  rmSync(out, { recursive: true, force: true });
  await deletePrefix(prefix);
});

interface DemoJson {
  status: string;
  rows: number;
  kept: number;
  filtered: number;
  failed: number;
  reconciled: boolean;
  rowsPerSec: number;
  dashboardUrl: string;
  quality: {
    filterPrecision: number;
    filterRecall: number;
    captionerAccuracy: number;
    webTexts: { correct: number; kept: number; keptCorrect: number };
    byNoise: Record<string, { rows: number; webKept: number }>;
    clip: {
      rules: Record<'itm' | 'clip' | 'decision', { kept: number; precision: number; recall: number; rejected: Record<string, number> }>;
      clipMinScore: number;
      meanScore: { web: number; synthetic: number; byNoise: Record<string, number> };
      labels: { counts: Record<string, number>; topInScene: number; oneShapeAccuracy: number };
    };
  };
  stages: string[];
  rejectedBy: Record<string, number>;
  labelCounts: Record<string, number>;
}

describe('capfilt demo', { timeout: 300_000 }, () => {
  it('runs the whole pipeline on the demo model, measures the filter against ground truth, serves the dashboard', async () => {
    const demo = cli(['demo', '--rows', '150', '--out', out, '--json', '--serve', '--progress', 'none'], { REDIS_URL, CAPFILT_REDIS_PREFIX: prefix });
    await demo.waitFor(/serving until Ctrl-C/, 240_000);
    await demo.waitFor(/"dashboardUrl"/);
    const s = JSON.parse(demo.stdout().trim().split('\n').at(-1)!) as DemoJson;

    const page = await fetch(s.dashboardUrl);
    expect(page.status).toBe(200);
    demo.child.kill('SIGINT');
    expect((await demo.exited).code, demo.stderr().slice(-2000)).toBe(0);

    expect(demo.stdout()).toMatch(/filter precision\s+\d+\.\d%/);
    expect(s).toMatchObject({ status: 'done', reconciled: true, rows: 150, failed: 0 });
    expect(s.kept + s.filtered).toBe(150);
    expect(s.rowsPerSec).toBeGreaterThan(0);
    // The filter does better than keeping every web text (whose precision is the share of correct ones).
    const q = s.quality;
    expect(q.filterPrecision).toBeGreaterThan(q.webTexts.correct / 150 + 0.15);
    expect(q.filterRecall).toBeGreaterThan(0.5);
    expect(q.captionerAccuracy).toBeGreaterThanOrEqual(0);
    expect(q.captionerAccuracy).toBeLessThanOrEqual(1);
    expect(q.byNoise.junk.webKept / q.byNoise.junk.rows).toBeLessThan(q.byNoise.correct.webKept / q.byNoise.correct.rows);
    expect(readdirSync(out).filter((f) => /^\d{5}\.parquet$/.test(f)).length).toBeGreaterThan(1);
    expect(existsSync(join(out, 'run.json'))).toBe(true);

    // BLIP and CLIP together by default: CLIP's figures beside BLIP's, in the terminal and the JSON.
    expect(s.stages).toContain('clip');
    expect(demo.stdout()).toMatch(/web texts, by rule +BLIP ITM ≥ 0\.5 +CLIP ≥ 0\.405 +decision/);
    expect(demo.stdout()).toMatch(/rejected swapped +\d+\.\d% +\d+\.\d% +\d+\.\d%/);
    expect(demo.stdout()).toMatch(/zero-shot labels +\w+ \d+/);
    const c = q.clip;
    expect(c.clipMinScore).toBe(0.405);
    // The demo CLIP separates correct texts from mismatched and junk ones (its card: 1.00 on fresh seeds) …
    expect(c.rules.clip.recall).toBeGreaterThan(0.9);
    expect(c.rules.clip.rejected.mismatched).toBeGreaterThan(0.9);
    expect(c.rules.clip.rejected.junk).toBeGreaterThan(0.9);
    // … but not attribute swaps, where BLIP ITM is stronger; the run needs both rules to pass.
    expect(c.rules.itm.rejected.swapped).toBeGreaterThan(c.rules.clip.rejected.swapped);
    expect(c.rules.decision.kept).toBeLessThanOrEqual(Math.min(c.rules.itm.kept, c.rules.clip.kept));
    expect(c.meanScore.byNoise.correct).toBeGreaterThan(c.meanScore.byNoise.mismatched);
    expect(c.labels.topInScene).toBeGreaterThan(0.8);
    const runJson = JSON.parse(readFileSync(join(out, 'run.json'), 'utf8'));
    expect(runJson.labelCounts).toEqual(c.labels.counts);
    expect(Object.values(runJson.labelCounts as Record<string, number>).reduce((a, b) => a + b, 0)).toBe(150);
    expect(runJson.rejectedBy.clip).toBeGreaterThan(0);
    expect(s.rejectedBy).toEqual(runJson.rejectedBy);
  });
});
