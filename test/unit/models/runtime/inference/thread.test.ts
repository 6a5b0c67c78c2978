import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isCapfiltError } from '../../../../src/core/errors.ts';
import { loadBlip } from '../../../../src/models/blip/index.ts';
import type { BlipModels } from '../../../../src/models/blip/types.ts';
import type { GenerationOptions } from '../../../../src/models/runtime/generation/types.ts';
import { processMetrics } from '../../../../src/telemetry/metrics.ts';
import { openThreadedBlip } from '../../../../src/workers/inference/client.ts';

// The t1 parity checkpoints (tiny BLIP captioner + filter) with a tokenizer over their vocabulary.
const fixtures = fileURLToPath(new URL('../../../fixtures/parity/', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'capfilt-thread-'));
const runtime = { device: 'cpu', threads: 1, precision: 'fp32' as const };
const options: GenerationOptions = { method: 'greedy', maxLength: 12, minLength: 0, numBeams: 1, lengthPenalty: 1, topP: 1, topK: 0, temperature: 1, repetitionPenalty: 1, numReturnSequences: 1, prompt: '', seed: 0 };

let threaded: BlipModels;
let direct: BlipModels;

beforeAll(async () => {
  for (const role of ['captioner', 'filter']) {
    cpSync(join(fixtures, 't1', role), join(dir, role), { recursive: true });
    cpSync(join(fixtures, 't1-tokenizer'), join(dir, role), { recursive: true });
  }
  [threaded, direct] = await Promise.all([openThreadedBlip(dir, runtime), loadBlip(dir, runtime)]);
});

afterAll(async () => {
  await threaded?.captioner?.close();
  await direct?.captioner?.close();
  await direct?.filter?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('inference thread', () => {
  const image = () => ({ key: 'k0', bytes: new Uint8Array(readFileSync(join(fixtures, 't1/preprocess_0.png'))) });

  it('gives the same captions and scores as the runtime on the main thread', async () => {
    expect(threaded.info).toEqual(direct.info);
    const [a, b] = [await threaded.captioner!.caption([image()], options), await direct.captioner!.caption([image()], options)];
    expect(a).toEqual(b);
    expect(a[0].ok).toBe(true);
    const items = [{ image: image(), texts: ['a', 'b c'] }];
    expect(await threaded.filter!.score(items)).toEqual(await direct.filter!.score(items));
  });

  it('observes each batch in the process model-latency histogram', async () => {
    const count = async (model: string) => {
      const m = await processMetrics().registry.getSingleMetric('capfilt_model_latency_seconds')!.get();
      return m.values.find((v) => (v as { metricName?: string }).metricName === 'capfilt_model_latency_seconds_count' && v.labels.model === model)?.value ?? 0;
    };
    const [c0, f0] = [await count('captioner'), await count('filter')];
    await threaded.captioner!.caption([image()], options);
    await threaded.filter!.score([{ image: image(), texts: ['a'] }]);
    expect(await count('captioner')).toBe(c0 + 1);
    expect(await count('filter')).toBe(f0 + 1);
  });

  it('returns per-image failures as values and keeps serving', async () => {
    const res = await threaded.filter!.score([{ image: { key: 'bad', bytes: new Uint8Array([1, 2, 3]) }, texts: ['a'] }, { image: image(), texts: ['a'] }]);
    expect(res[0]).toMatchObject({ key: 'bad', ok: false, code: 'IMAGE_DECODE_FAILED' });
    expect(res[1].ok).toBe(true);
  });

  it('reports a model folder that cannot load as a coded error', async () => {
    const e = await openThreadedBlip(join(dir, 'nope'), runtime).catch((x: unknown) => x);
    expect(isCapfiltError(e, 'MODEL_DIR_INVALID')).toBe(true);
  });
});
