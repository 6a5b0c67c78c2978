/**
 * Quality of the bundled demo models through the TypeScript runtime, on fresh scenes: the demo
 * BLIP (src/demo/evaluate.ts: captions, ITM per noise kind, ITC retrieval) and the demo CLIP
 * (src/demo/evaluate-clip.ts: zero-shot shape kind and colour with one template and the ensemble,
 * the CLIP filter at a threshold chosen on a validation seed, rejection per noise kind beside
 * BLIP ITM's on the same rows and their decision agreement, int8 vs fp32 agreement).
 *   npm run eval:demo -- [--n 1000] [--seed S] [--model models/demo] [--clip-model models/demo-clip]
 *       [--skip-blip] [--skip-clip] [--no-int8] [--clip-val-n 1000] [--clip-val-seed 424242]
 *       [--zs-n 500] [--threads 0] [--k 5] [--itc-pools 3]
 * Prints one JSON object {seed, n, blip, clip, total_seconds} (fractions 0–1). The default seed
 * was used neither for training (7) nor for validation during training (4242) of either model,
 * nor to choose the CLIP threshold (its validation seed, 424242 by default).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { evaluateDemoModel } from '../src/demo/evaluate.ts';
import { evaluateDemoClip } from '../src/demo/evaluate-clip.ts';
import { loadBlip } from '../src/models/blip/index.ts';
import { convertClip } from '../src/models/clip/convert.ts';
import { loadClip } from '../src/models/clip/index.ts';

const { values } = parseArgs({
  options: {
    n: { type: 'string', default: '1000' },
    seed: { type: 'string', default: '20261129' },
    model: { type: 'string', default: 'models/demo' },
    'clip-model': { type: 'string', default: 'models/demo-clip' },
    'skip-blip': { type: 'boolean', default: false },
    'skip-clip': { type: 'boolean', default: false },
    'no-int8': { type: 'boolean', default: false },
    'clip-val-n': { type: 'string', default: '1000' },
    'clip-val-seed': { type: 'string', default: '424242' },
    'zs-n': { type: 'string', default: '500' },
    threads: { type: 'string', default: '0' },
    k: { type: 'string', default: '5' },
    'itc-pools': { type: 'string', default: '3' },
    size: { type: 'string', default: '160' },
    quiet: { type: 'boolean', default: false },
  },
});

const round1 = (x: number) => Math.round(x * 10) / 10;
const n = Number(values.n);
const seed = Number(values.seed);
const runtime = { device: 'cpu' as const, threads: Number(values.threads), precision: 'fp32' as const };
const say = values.quiet ? () => undefined : (line: string) => process.stderr.write(`eval-demo: ${line}\n`);
const started = performance.now();
const modelDir = resolve(values.model);
// The BLIP filter also serves the CLIP section's side-by-side ITM figures.
const blipModels = await loadBlip(modelDir, runtime);
if (!blipModels.captioner || !blipModels.filter) throw new Error(`${modelDir}: needs captioner/ and filter/`);
const result: Record<string, unknown> = { seed, n };
try {
  if (!values['skip-blip']) {
    const blip = await evaluateDemoModel(blipModels.captioner, blipModels.filter, {
      n, seed, size: Number(values.size), format: 'jpeg', k: Number(values.k), itcPools: Number(values['itc-pools']), batch: 16,
      onProgress: (phase, done, total) => say(`blip ${phase} ${done}/${total}`),
    });
    result.blip = { ...blip, model: values.model };
  }
  if (!values['skip-clip']) {
    const clipDir = resolve(values['clip-model']);
    const fp32 = (await loadClip(clipDir, runtime)).embedder;
    const int8Dir = values['no-int8'] ? null : await mkdtemp(join(tmpdir(), 'eval-demo-clip-int8-'));
    let int8: Awaited<ReturnType<typeof loadClip>>['embedder'] | null = null;
    try {
      if (int8Dir) {
        await convertClip(clipDir, int8Dir, 'int8');
        int8 = (await loadClip(int8Dir, { ...runtime, precision: 'int8' })).embedder;
      }
      const clip = await evaluateDemoClip({ embedder: fp32, int8, itm: blipModels.filter }, {
        n, seed, valN: Number(values['clip-val-n']), valSeed: Number(values['clip-val-seed']), zsN: Number(values['zs-n']),
        onProgress: (phase) => say(`clip ${phase}`),
      });
      result.clip = { ...clip, model: values['clip-model'], blip_model: values.model };
    } finally {
      await fp32.close();
      await int8?.close();
      if (int8Dir) await rm(int8Dir, { recursive: true, force: true });
    }
  }
} finally {
  await blipModels.captioner.close();
  await blipModels.filter.close();
}
process.stdout.write(`${JSON.stringify({ ...result, total_seconds: round1((performance.now() - started) / 1000) })}\n`);
