import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { CLIP_SIZES, writeRandomClip } from '../../../bench/random-clip.ts';
import type { GenerationOptions } from '../../../src/models/runtime/generation/types.ts';
import { processMetrics } from '../../../src/telemetry/metrics.ts';
import { ModelCache } from '../../../src/workers/models.ts';
import { runtimeFromConfig } from '../../../src/models/runtime/precision.ts';
import { t1ModelDir } from '../../helpers/t1-model.ts';

const fixtures = fileURLToPath(new URL('../../fixtures/parity/', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'capfilt-model-cache-'));
t1ModelDir(join(dir, 'blip'));
writeRandomClip(join(dir, 'clip'), CLIP_SIZES.tiny);
const cache = new ModelCache({ device: 'cpu', threads: 1, precision: 'fp32' }, pino({ level: 'silent' }));
afterAll(async () => {
  await cache.close();
  rmSync(dir, { recursive: true, force: true });
});

const options: GenerationOptions = { method: 'greedy', maxLength: 12, minLength: 0, numBeams: 1, lengthPenalty: 1, topP: 1, topK: 0, temperature: 1, repetitionPenalty: 1, numReturnSequences: 1, prompt: '', seed: 0 };

async function count(model: string, op: string): Promise<number> {
  const m = await processMetrics().registry.getSingleMetric('capfilt_model_latency_seconds')!.get();
  return m.values.find((v) => (v as { metricName?: string }).metricName === 'capfilt_model_latency_seconds_count' && v.labels.model === model && v.labels.op === op)?.value ?? 0;
}

describe('ModelCache', () => {
  const image = () => ({ key: 'k0', bytes: new Uint8Array(readFileSync(join(fixtures, 't1/preprocess_0.png'))) });

  it('observes each role call in the process model-latency histogram', async () => {
    const before = [await count('captioner', 'caption'), await count('filter', 'score'), await count('embedder', 'embed_texts'), await count('embedder', 'embed_images')];
    await (await cache.captioner(join(dir, 'blip'))).caption([image()], options);
    await (await cache.filter(join(dir, 'blip'))).score([{ image: image(), texts: ['a'] }]);
    const e = await cache.embedder(join(dir, 'clip'));
    await e.embedTexts(['a photo of a dog']);
    await e.embedImages([image()]);
    expect([await count('captioner', 'caption'), await count('filter', 'score'), await count('embedder', 'embed_texts'), await count('embedder', 'embed_images')]).toEqual(before.map((c) => c + 1));
  });

  it('loads a folder once and reports each role\'s model info', async () => {
    const [a, b] = await Promise.all([cache.embedder(join(dir, 'clip')), cache.embedder(join(dir, 'clip'))]);
    expect(a.dim).toBe(b.dim);
    expect(await cache.info(join(dir, 'clip'), 'embedder')).toMatchObject({ architecture: 'CLIPModel' });
    expect(await cache.info(join(dir, 'blip'), 'filter')).toMatchObject({ architecture: 'BlipForImageTextRetrieval' });
  });

  it('builds each role at its own precision under models.precision auto (int8 on the CPU), fp32 when asked', async () => {
    const auto = new ModelCache(runtimeFromConfig({ device: 'cpu', threads: 1, precision: 'auto' }), pino({ level: 'silent' }));
    const fp32 = new ModelCache(runtimeFromConfig({ device: 'cpu', threads: 1, precision: 'fp32' }), pino({ level: 'silent' }));
    try {
      expect(await fp32.info(join(dir, 'blip'), 'captioner')).toMatchObject({ precision: 'fp32' });
      expect(await auto.info(join(dir, 'blip'), 'captioner')).toMatchObject({ precision: 'int8' });
      expect(await auto.info(join(dir, 'blip'), 'filter')).toMatchObject({ precision: 'int8' });
      expect(await auto.info(join(dir, 'clip'), 'embedder')).toMatchObject({ precision: 'int8' });
    } finally {
      await auto.close();
      await fp32.close();
    }
  });

  it('names the missing role with a coded error', async () => {
    await expect(cache.embedder(join(dir, 'blip'))).rejects.toMatchObject({ code: 'MODEL_DIR_INVALID' });
    await expect(cache.captioner(join(dir, 'clip'))).rejects.toMatchObject({ code: 'MODEL_DIR_INVALID' });
  });
});
