import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { evaluateDemoModel, type DemoEvalResult } from '../../src/demo/evaluate.ts';
import { loadBlip } from '../../src/models/blip/index.ts';
import type { BlipModels } from '../../src/models/blip/types.ts';

/**
 * Quality of the bundled demo model through the TypeScript runtime, on a small sample of fresh
 * scenes (seed used neither in training nor in validation). The full measurement is
 * `npm run eval:demo` (1000 scenes). These tests pin the issue-3 bars the committed checkpoint
 * meets. It does not yet meet the caption, swapped-text and ITC-retrieval bars (it has not learned
 * shape kinds; see models/demo/MODEL_CARD.md), so those figures are reported by eval:demo, not
 * asserted here.
 */
const modelDir = new URL('../../models/demo', import.meta.url).pathname;
let models: BlipModels;
let result: DemoEvalResult;

beforeAll(async () => {
  models = await loadBlip(modelDir, { device: 'cpu', threads: 1, precision: 'fp32' });
  result = await evaluateDemoModel(models.captioner!, models.filter!, {
    n: 200, seed: 31337, size: 160, format: 'jpeg', k: 5, itcPools: 1, batch: 16,
  });
}, 600_000);

afterAll(async () => {
  await models?.captioner?.close();
  await models?.filter?.close();
});

describe('bundled demo BLIP (models/demo)', () => {
  it('nucleus captions (K=5) are diverse for most images, as CapFilt sampling needs', () => {
    expect(result.caption_nucleus_diverse).toBeGreaterThan(0.5);
  });

  it('filter: ITM keeps ≥ 95% of correct texts and rejects ≥ 97% of mismatched and junk ones', () => {
    expect(result.itm_kept_correct).toBeGreaterThanOrEqual(0.95);
    expect(result.itm_rejected_mismatched).toBeGreaterThanOrEqual(0.97);
    expect(result.itm_rejected_junk).toBeGreaterThanOrEqual(0.97);
  });
});
