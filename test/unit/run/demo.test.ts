import { describe, expect, it } from 'vitest';
import { logger } from '../../../src/core/logger.ts';
import type { RowRecord, ScoredText } from '../../../src/core/records.ts';
import { generateDemoPair } from '../../../src/demo/index.ts';
import { DEMO_CLIP_DIR, DEMO_CLIP_MIN_SCORE, demoConfig, demoQuality, type DemoOptions } from '../../../src/run/demo.ts';
import { testOverrides } from '../../helpers/config.ts';

const options = (over: Partial<DemoOptions> = {}): DemoOptions => ({
  rows: 100, seed: 1, out: '/nonexistent/out', size: 160, configFile: null, overrides: [], env: {},
  log: logger(), progress: 'none', ...over,
});

describe('capfilt demo config', () => {
  it('runs the clip stage with the bundled demo CLIP, its card threshold and the shape labels by default', () => {
    const c = demoConfig(options(), 'in.jsonl', 'http://127.0.0.1:1', 'labels.txt').config;
    expect(c.pipeline.stages).toEqual(['download', 'caption', 'filter', 'clip', 'write']);
    expect(c.models.clip).toBe(DEMO_CLIP_DIR);
    expect(c.clip.minScore).toBe(DEMO_CLIP_MIN_SCORE);
    expect(c.clip.labels).toBe('labels.txt');
  });

  it('--no-clip runs BLIP alone, as before CLIP was bundled', () => {
    const c = demoConfig(options({ clip: false }), 'in.jsonl', 'http://127.0.0.1:1').config;
    expect(c.pipeline.stages).toEqual(['download', 'caption', 'filter', 'write']);
    expect([c.models.clip, c.clip.minScore, c.clip.labels]).toEqual([null, null, null]);
  });

  it('a CLIP model the user names gets neither the demo threshold nor its labels; the user\'s settings win', () => {
    const c = demoConfig(options({ overrides: testOverrides({ 'models.clip': '/some/clip' }) }), 'in.jsonl', 'http://127.0.0.1:1', 'labels.txt').config;
    expect(c.pipeline.stages).toContain('clip');
    expect([c.models.clip, c.clip.minScore, c.clip.labels]).toEqual(['/some/clip', null, null]);
    const mine = demoConfig(options({ overrides: testOverrides({ 'clip.minScore': 0.2 }) }), 'in.jsonl', 'http://127.0.0.1:1').config;
    expect(mine.clip.minScore).toBe(0.2);
  });
});

describe('demo quality with CLIP', () => {
  const text = (source: ScoredText['source'], itm: number, clip: number, kept: boolean) => ({ text: 't', source, itm, itc: 0, clip, kept }) as ScoredText;
  const row = (i: number, noise: string, web: ScoredText, label: string): RowRecord => ({
    key: String(i), rowIndex: i, url: null, text: 't', extra: { noise, demo_index: i }, trusted: false,
    status: web.kept ? 'kept' : 'filtered', reason: null, reasonDetail: null, image: null, captions: [],
    scores: [web, text('synthetic', 0.9, 0.5, true)], selected: null, fetch: null, labels: [{ label, prob: 0.9 }],
  });

  it('scores each rule alone against the ground truth beside the decision, means CLIP scores, checks top labels against the scene', () => {
    const kind = (i: number) => generateDemoPair(3, i).scene.shapes[0].kind;
    const records = [
      // correct: both rules keep; mismatched: ITM keeps, CLIP rejects; junk: both reject; swapped: CLIP keeps, ITM rejects.
      row(0, 'correct', text('web', 0.9, 0.5, true), kind(0)),
      row(1, 'mismatched', text('web', 0.8, 0.1, false), kind(1)),
      row(2, 'junk', text('web', 0.1, -0.2, false), 'no such shape'),
      row(3, 'swapped', text('web', 0.2, 0.45, false), kind(3)),
    ];
    const q = demoQuality(records, 3, { itmThreshold: 0.5, clipMinScore: 0.4 }).clip!;
    expect(q.rules.itm).toEqual({ kept: 0.5, precision: 0.5, recall: 1, rejected: { junk: 1, mismatched: 0, swapped: 1 } });
    expect(q.rules.clip).toEqual({ kept: 0.5, precision: 0.5, recall: 1, rejected: { junk: 1, mismatched: 1, swapped: 0 } });
    expect(q.rules.decision).toEqual({ kept: 0.25, precision: 1, recall: 1, rejected: { junk: 1, mismatched: 1, swapped: 1 } });
    expect(q.meanScore.web).toBeCloseTo((0.5 + 0.1 - 0.2 + 0.45) / 4, 10);
    expect(q.meanScore.synthetic).toBeCloseTo(0.5, 10);
    expect(q.meanScore.byNoise.junk).toBeCloseTo(-0.2, 10);
    expect(q.labels!.topInScene).toBe(0.75);
    expect(Object.values(q.labels!.counts).reduce((a, b) => a + b, 0)).toBe(4);
    // Without the clip stage (no rules given) the demo reports no CLIP section.
    expect(demoQuality(records, 3).clip).toBeNull();
  });
});
