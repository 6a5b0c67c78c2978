/**
 * int8 vs fp32 on the demo model: `npm run bench:int8 -- [model-dir] [--n N] [--threads T]`.
 * Loads the model dir (default models/demo: captioner/ + filter/, HF or converted fp32) twice —
 * fp32 and int8 graphs built from the same weights — runs greedy captions and ITM/ITC scores of
 * generated demo pairs through both, and prints one JSON object: the share of identical greedy
 * captions and of identical captions by the run's own decoding (config default: nucleus, K = 1,
 * seeded, so both precisions draw from the same stream), of identical keep/drop decisions at the
 * run's ITM threshold (filter.itmThreshold, or --itm T), and the time ratios, side by side.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { loadConfig } from '../src/config/load.ts';
import { generateDemoPairs } from '../src/demo/pairs.ts';
import { renderScene } from '../src/demo/render.ts';
import { loadBlip } from '../src/models/blip/index.ts';
import type { BlipModels } from '../src/models/blip/types.ts';
import type { GenerationOptions } from '../src/models/runtime/generation/types.ts';
import type { ImageInput } from '../src/models/runtime/types.ts';
import { machine } from './timing.ts';

const args = process.argv.slice(2);
const flag = (name: string, def: number): number => (args.includes(name) ? Number(args[args.indexOf(name) + 1]) : def);
const dir = resolve(args.find((a, i) => !a.startsWith('--') && !args[i - 1]?.startsWith('--')) ?? 'models/demo');
const n = flag('--n', 64);
const threads = flag('--threads', 2);
const batch = 8;
const defaults = loadConfig().config;
const itmThreshold = flag('--itm', defaults.filter.itmThreshold);
const c = defaults.caption;
const runDecoding: GenerationOptions = {
  method: c.method, maxLength: 30, minLength: 10, numBeams: c.numBeams, lengthPenalty: 1, topP: c.topP, topK: c.topK,
  temperature: c.temperature, repetitionPenalty: c.repetitionPenalty, numReturnSequences: 1, prompt: 'a picture of ', seed: 0,
};
if (!existsSync(dir)) {
  console.error(`bench:int8: model folder ${dir} not found`);
  process.exit(2);
}

const greedy: GenerationOptions = {
  method: 'greedy', maxLength: 30, minLength: 10, numBeams: 1, lengthPenalty: 1, topP: 1, topK: 0, temperature: 1,
  repetitionPenalty: 1, numReturnSequences: 1, prompt: 'a picture of ', seed: 0,
};

async function run(models: BlipModels, images: ImageInput[], texts: string[]): Promise<{ captions: string[]; runCaptions: string[]; itm: number[]; itc: number[]; captionS: number; scoreS: number }> {
  const captions: string[] = [];
  const runCaptions: string[] = [];
  const itm: number[] = [];
  const itc: number[] = [];
  let t = performance.now();
  for (let i = 0; i < images.length; i += batch) {
    for (const r of await models.captioner!.caption(images.slice(i, i + batch), greedy)) captions.push(r.ok ? r.value[0] : `error ${r.code}`);
  }
  const captionS = (performance.now() - t) / 1000;
  for (let i = 0; i < images.length; i += batch) {
    for (const r of await models.captioner!.caption(images.slice(i, i + batch), runDecoding)) runCaptions.push(r.ok ? r.value[0] : `error ${r.code}`);
  }
  t = performance.now();
  for (let i = 0; i < images.length; i += batch) {
    const res = await models.filter!.score(images.slice(i, i + batch).map((image, k) => ({ image, texts: [texts[i + k]] })));
    for (const r of res) {
      if (!r.ok) throw new Error(`${r.key}: ${r.message}`);
      itm.push(r.value[0].itm);
      itc.push(r.value[0].itc);
    }
  }
  return { captions, runCaptions, itm, itc, captionS, scoreS: (performance.now() - t) / 1000 };
}

const pairs = generateDemoPairs({ n, seed: 20261129 });
const images = await Promise.all(pairs.map(async (p) => ({ key: p.key, bytes: await renderScene(p.scene, { size: 160, format: 'jpeg', quality: 90 }) })));
const texts = pairs.map((p) => p.webText);
const results: Record<string, Awaited<ReturnType<typeof run>>> = {};
for (const precision of ['fp32', 'int8'] as const) {
  const models = await loadBlip(dir, { device: 'cpu', threads, precision });
  results[precision] = await run(models, images, texts);
  await models.captioner?.close();
  await models.filter?.close();
}
const a = results.fp32;
const b = results.int8;
const same = (xs: boolean[]): number => Number((xs.filter(Boolean).length / xs.length).toFixed(4));
process.stdout.write(`${JSON.stringify({
  bench: 'int8-agreement',
  machine: machine(),
  model: dir,
  pairs: n,
  threads,
  greedy_caption_agreement: same(a.captions.map((x, i) => x === b.captions[i])),
  run_decoding: runDecoding.method,
  run_decoding_caption_agreement: same(a.runCaptions.map((x, i) => x === b.runCaptions[i])),
  itm_threshold: itmThreshold,
  keep_drop_agreement_itm: same(a.itm.map((p, i) => (p >= itmThreshold) === (b.itm[i] >= itmThreshold))),
  itm_max_abs_diff: Math.max(...a.itm.map((p, i) => Math.abs(p - b.itm[i]))),
  itc_max_abs_diff: Math.max(...a.itc.map((p, i) => Math.abs(p - b.itc[i]))),
  caption_speedup_int8: Number((a.captionS / b.captionS).toFixed(2)),
  score_speedup_int8: Number((a.scoreS / b.scoreS).toFixed(2)),
  seconds: { fp32: { caption: a.captionS, score: a.scoreS }, int8: { caption: b.captionS, score: b.scoreS } },
}, null, 2)}\n`);
