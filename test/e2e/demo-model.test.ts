import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { evaluateDemoModel, type DemoEvalResult } from '../../src/demo/evaluate.ts';
import { loadBlip } from '../../src/models/blip/index.ts';
import type { BlipModels } from '../../src/models/blip/types.ts';

/**
 * The bundled demo model meets issue 3's quality bars through the TypeScript runtime, on a
 * small sample of fresh scenes (seed used neither in training nor in validation). The full
 * measurement is `npm run eval:demo` (1000 scenes).
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
  it('captions: greedy ≥ 90% exact, nucleus ≥ 80% exact and diverse for most images', () => {
    expect(result.caption_exact).toBeGreaterThanOrEqual(0.9);
    expect(result.caption_exact_nucleus).toBeGreaterThanOrEqual(0.8);
    expect(result.caption_nucleus_diverse).toBeGreaterThan(0.5);
  });

  it('filter: ITM keeps correct texts and rejects mismatched, junk and swapped ones', () => {
    expect(result.itm_kept_correct).toBeGreaterThanOrEqual(0.95);
    expect(result.itm_rejected_mismatched).toBeGreaterThanOrEqual(0.97);
    expect(result.itm_rejected_junk).toBeGreaterThanOrEqual(0.97);
    expect(result.itm_rejected_swapped).toBeGreaterThanOrEqual(0.85);
  });

  it('filter: ITC image→text top-1 among 100 ≥ 90%', () => {
    expect(result.itc_top1_100).toBeGreaterThanOrEqual(0.9);
  });
});
