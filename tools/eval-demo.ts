/**
 * Quality of the bundled demo BLIP through the TypeScript runtime, on fresh scenes.
 *   npm run eval:demo -- [--n 1000] [--seed S] [--model models/demo] [--threads 0] [--k 5] [--itc-pools 3]
 * Prints one JSON object (fractions 0–1). The default seed was used neither for training (7) nor
 * for validation during training (4242).
 */
import { parseArgs } from 'node:util';
import { resolve } from 'node:path';
import { evaluateDemoModel } from '../src/demo/evaluate.ts';
import { loadBlip } from '../src/models/blip/index.ts';

const { values } = parseArgs({
  options: {
    n: { type: 'string', default: '1000' },
    seed: { type: 'string', default: '20261129' },
    model: { type: 'string', default: 'models/demo' },
    threads: { type: 'string', default: '0' },
    k: { type: 'string', default: '5' },
    'itc-pools': { type: 'string', default: '3' },
    size: { type: 'string', default: '160' },
    quiet: { type: 'boolean', default: false },
  },
});

const modelDir = resolve(values.model);
const models = await loadBlip(modelDir, { device: 'cpu', threads: Number(values.threads), precision: 'fp32' });
if (!models.captioner || !models.filter) throw new Error(`${modelDir}: needs captioner/ and filter/`);
const started = performance.now();
const result = await evaluateDemoModel(models.captioner, models.filter, {
  n: Number(values.n),
  seed: Number(values.seed),
  size: Number(values.size),
  format: 'jpeg',
  k: Number(values.k),
  itcPools: Number(values['itc-pools']),
  batch: 16,
  onProgress: values.quiet ? undefined : (phase, done, total) => process.stderr.write(`eval-demo: ${phase} ${done}/${total}\n`),
});
await models.captioner.close();
await models.filter.close();
process.stdout.write(`${JSON.stringify({ ...result, model: values.model, total_seconds: Math.round((performance.now() - started) / 100) / 10 })}\n`);
