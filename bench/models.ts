/**
 * BLIP runtime benchmark at base size with random weights: `npm run bench:models`.
 * Prints one JSON object. Everything runs in this one process on `--threads` (default 2)
 * intra-op threads: fp32 MatMul peak, vision encoder, decoding steps, captions end to end,
 * ITM text side and end to end, model load time and peak RSS.
 * Options: --threads N, --keep (leave the temp model folder), --int8 (also measure int8 graphs,
 * and the ITM text side at fp32 and int8 timed alternately: `itm_text_side_alternating`),
 * --quiet-wait S (wait up to S seconds for the machine to go quiet before each timed section),
 * --decode-rounds N (timed generations per decoding method after an untimed one, default 3;
 * the step figures are per-position medians over them; `token_ms_wall_mean` is a cached token's
 * whole time, the step plus the search around it, and `search_ms_per_token` the difference;
 * a beam step also holds the log-sum-exp graph's run its log-softmax is read from, about 2 ms at 24 rows;
 * nucleus's softmax graph runs in the search, not the step: src/models/runtime/row-graphs.ts),
 * --clip (append bench/clip.ts's CLIP section as `clip`; its own flags such as --quick, --large,
 * --hf pass through — see bench/clip.ts, also runnable alone as `npm run bench:clip`).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { convert } from '../src/models/blip/convert.ts';
import { OrtDecoderSession } from '../src/models/blip/decoder-session.ts';
import { Float32Pool } from '../src/models/runtime/buffers.ts';
import { generate } from '../src/models/runtime/generation/index.ts';
import { graphDataBuffer } from '../src/models/runtime/graph/builder.ts';
import { loadModel, releaseModel, type LoadedModel } from '../src/models/blip/loader.ts';
import { GraphSession, f32, i64 } from '../src/models/runtime/sessions.ts';
import type { GenerationOptions } from '../src/models/runtime/generation/types.ts';
import type { RuntimeOptions } from '../src/models/runtime/types.ts';
import { writeRandomBlip } from './random-blip.ts';
import { loadBlipConfig } from '../src/models/blip/config.ts';
import { buildVisionGraph } from '../src/models/blip/graph/vision.ts';
import type { LayerOptions } from '../src/models/runtime/graph/layers.ts';
import { expectedWeights } from '../src/models/blip/weights/names.ts';
import { CheckedWeights, openWeightFolder } from '../src/models/runtime/weights/source.ts';
import { machine, round, timeBest } from './timing.ts';
import { TimedSession } from './timed-session.ts';
import { bestRate, streamBandwidth, type StreamRates } from './bandwidth.ts';
import { int8MatmulPeak, matmulPeak as chainedMatmulPeak, othersShare, waitQuiet } from './clip.ts';
import type { BlipConfig } from '../src/models/blip/config.ts';

const args = process.argv.slice(2);
const threads = Number(args[args.indexOf('--threads') + 1]) || 2;
const withInt8 = args.includes('--int8');
/** Seconds to wait, before each timed section, for other processes to leave the machine mostly idle. */
const quietWait = args.includes('--quiet-wait') ? Number(args[args.indexOf('--quiet-wait') + 1]) : 0;
/** Timed generations per decoding method, after one untimed one. */
const decodeRounds = args.includes('--decode-rounds') ? Number(args[args.indexOf('--decode-rounds') + 1]) : 3;
if (!Number.isInteger(decodeRounds) || decodeRounds < 1) throw new Error('--decode-rounds: a whole number ≥ 1');
const runtime: RuntimeOptions = { device: 'cpu', threads, precision: 'fp32' };

/** FLOPs of one image through the vision encoder (matmuls and attention; norms ignored). */
function visionFlops(m: LoadedModel): number {
  const v = m.cfg.vision;
  const T = v.seqLen;
  const H = v.hiddenSize;
  const patches = 2 * (T - 1) * H * 3 * v.patchSize * v.patchSize;
  const layer = 2 * T * H * 3 * H + 2 * T * H * H + 2 * 2 * T * H * v.intermediateSize + 2 * 2 * T * T * H;
  return patches + v.layers * layer;
}

/**
 * Bytes and FLOPs one cached decode step (one new token per row) must move and compute:
 * every decoder weight once (fp32, or int8 for the quantised linears; the LM head stays fp32),
 * each image's cross-attention K/V once per layer, the self-attention cache (capacity `cap`),
 * and the products for `rows` rows. Norms, biases and activations are left out (under 1%).
 */
export function decodeStepCost(cfg: BlipConfig, rows: number, images: number, cap: number, precision: 'fp32' | 'int8'): { bytes: number; flops: number; weightBytes: number; crossBytes: number } {
  const { hiddenSize: H, intermediateSize: I, layers: L, vocabSize: V } = cfg.text;
  const Tv = cfg.vision.seqLen;
  const layerParams = 6 * H * H + 2 * H * I; // q k v o, cross q o, FFN
  const weightBytes = L * layerParams * (precision === 'int8' ? 1 : 4) + 4 * (H * H + H * V);
  const crossBytes = 4 * images * L * 2 * Tv * H;
  const cacheBytes = 4 * rows * L * 2 * cap * H;
  const flops = 2 * rows * (L * layerParams + H * H + H * V) + 2 * rows * L * (2 * Tv * H + 2 * cap * H);
  return { bytes: weightBytes + crossBytes + cacheBytes, flops, weightBytes, crossBytes };
}

const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function images(n: number, size: number): Promise<{ key: string; bytes: Uint8Array }[]> {
  return Promise.all(Array.from({ length: n }, async (_, i) => {
    const raw = Buffer.alloc(size * size * 3);
    for (let p = 0; p < raw.length; p++) raw[p] = (p * 31 + i * 97 + (p >> 7)) & 255;
    const bytes = await sharp(raw, { raw: { width: size, height: size, channels: 3 } }).jpeg().toBuffer();
    return { key: `img-${i}`, bytes: new Uint8Array(bytes) };
  }));
}

/** The ITM text side's inputs: 32 pairs (4 images × 8 texts) of 30 tokens, image embeddings from `fil`'s vision graph. */
async function itmInputs(fil: LoadedModel, px: ort.Tensor): Promise<{ feeds: Record<string, ort.Tensor>; pairs: number; L: number; images: number }> {
  const pairs = 32;
  const L = 30;
  const images = 4;
  const S = fil.cfg.vision.imageSize;
  const ids = Array.from({ length: pairs }, () => [fil.special.cls, ...Array.from({ length: L - 2 }, (_, j) => 1000 + (j % 16)), fil.special.sep]).flat();
  const embeds = (await fil.sessions.vision.run({ pixel_values: f32((px.data as Float32Array).slice(0, images * 3 * S * S), [images, 3, S, S]) })).last_hidden_state;
  return { feeds: { input_ids: i64(ids, [pairs, L]), attention_mask: i64(new Array(pairs * L).fill(1), [pairs, L]), image_embeds: embeds }, pairs, L, images };
}

/**
 * The ITM text side (text_filter graph) at fp32 and int8 on the same inputs, timed alternately
 * (`rounds` × one fp32 run then one int8 run, best of each): the int8 / fp32 ratio without the
 * minutes between the two precisions' sections, over which this shared machine's memory
 * bandwidth swings.
 */
async function itmAlternating(fp32Dir: string, int8Dir: string, rounds = 5): Promise<Record<string, unknown>> {
  const models = { fp32: await loadModel(join(fp32Dir, 'filter'), runtime), int8: await loadModel(join(int8Dir, 'filter'), { ...runtime, precision: 'int8' }) };
  try {
    const S = models.fp32.cfg.vision.imageSize;
    const px = f32(Float32Array.from({ length: 4 * 3 * S * S }, (_, i) => Math.sin(i) * 1.5), [4, 3, S, S]);
    const { feeds, pairs } = await itmInputs(models.fp32, px);
    const best = { fp32: Infinity, int8: Infinity };
    const { others } = await othersShare(async () => {
      for (let r = 0; r <= rounds; r++) {
        for (const p of ['fp32', 'int8'] as const) {
          const t = performance.now();
          await models[p].sessions.text_filter.run(feeds);
          // Round 0 warms both sessions up.
          if (r > 0) best[p] = Math.min(best[p], performance.now() - t);
        }
      }
    });
    return {
      rounds,
      fp32_pairs_per_s: round((pairs * 1000) / best.fp32, 1),
      int8_pairs_per_s: round((pairs * 1000) / best.int8, 1),
      int8_vs_fp32: round(best.fp32 / best.int8, 2),
      others_cpu_share: others,
    };
  } finally {
    await Promise.all([releaseModel(models.fp32), releaseModel(models.int8)]);
  }
}

async function benchPrecision(converted: string, precision: RuntimeOptions['precision']): Promise<Record<string, unknown>> {
  const opts = { ...runtime, precision };
  const t0 = performance.now();
  const cap = await loadModel(join(converted, 'captioner'), opts);
  const fil = await loadModel(join(converted, 'filter'), opts);
  const loadS = (performance.now() - t0) / 1000;
  const S = cap.cfg.vision.imageSize;
  const B = 8;
  const px = f32(Float32Array.from({ length: B * 3 * S * S }, (_, i) => Math.sin(i) * 1.5), [B, 3, S, S]);
  await cap.sessions.vision.run({ pixel_values: f32(new Float32Array(3 * S * S), [1, 3, S, S]) });
  let embeds: ort.Tensor | undefined;
  const visionS = await timeBest(1, async () => {
    embeds = (await cap.sessions.vision.run({ pixel_values: px })).last_hidden_state;
  });

  const newTokens = 20;
  const prefix = [cap.special.bos, ...cap.tokenizer!.encodePlain('a picture of ')];
  const total = prefix.length + newTokens;
  const base: GenerationOptions = {
    method: 'greedy', maxLength: total, minLength: total, numBeams: 3, lengthPenalty: 1, topP: 0.9, topK: 0,
    temperature: 1, repetitionPenalty: 1.1, numReturnSequences: 1, prompt: 'a picture of ', seed: 0,
  };
  // One untimed generation per method first: the first batches after load pay for faulting in
  // ORT's arena and the allocator's heap (page faults fall from ~12k to under 1k a batch by the
  // third), which a worker that runs thousands of batches pays once. `first_run_step_ms_mean`
  // keeps what the first timed batch would have shown.
  const decode: Record<string, Record<string, unknown>> = {};
  // One pool across generations, as the captioner keeps one across batches.
  const pool = new Float32Pool();
  const run = async (method: GenerationOptions['method']): Promise<{ steps: number[]; totalS: number; tokenWallMs: number; others: number | null }> => {
    const t = performance.now();
    const timed = new TimedSession(await OrtDecoderSession.open(cap.cfg, cap.sessions.cross_kv, cap.sessions.decoder, embeds!, pool, cap.rowGraphs));
    const opened = performance.now();
    const { others } = await othersShare(() => generate(timed, Array.from({ length: B }, () => prefix), { ...base, method }, cap.special, Array.from({ length: B }, (_, i) => `k${i}`)));
    const end = performance.now();
    timed.close();
    // ms[0] is the prefix step (prompt tokens); ms[t] produces new token t+1. A cached token's
    // wall time also holds the search around the step (scores, candidates, beam re-ordering).
    return { steps: timed.ms, totalS: (end - t) / 1000, tokenWallMs: (end - opened - timed.ms[0]) / (timed.ms.length - 1), others };
  };
  for (const method of ['greedy', 'beam', 'nucleus'] as const) {
    const first = await run(method);
    const waited = await waitQuiet(quietWait);
    // The floor's rates are measured right before the steps, under the same load.
    const { value: rates, others: ratesOthers } = await othersShare(async () => ({ bw: await streamBandwidth(runtime), peak: await chainedMatmulPeak(runtime) }));
    const rounds: Awaited<ReturnType<typeof run>>[] = [];
    for (let r = 0; r < decodeRounds; r++) rounds.push(await run(method));
    // Each position's median over the rounds: one step slowed by another process (this machine
    // is shared) moves a single-run mean of five steps by 10% or more.
    const at = (i: number): number => median(rounds.map((x) => x.steps[i]));
    const positions = rounds[0].steps.length;
    const byPosition = Array.from({ length: positions }, (_, i) => at(i));
    const cached = rounds.flatMap((x) => x.steps.slice(1));
    const early = mean(byPosition.slice(1, 6));
    const late = mean(byPosition.slice(15, 21));
    const rows = method === 'beam' ? B * base.numBeams : B;
    const cost = decodeStepCost(cap.cfg, rows, B, total, precision === 'int8' ? 'int8' : 'fp32');
    decode[method] = {
      rows,
      rounds: decodeRounds,
      prefix_step_ms: round(byPosition[0], 1),
      step_ms_tokens_1_5: round(early, 1),
      step_ms_tokens_15_20: round(late, 1),
      late_vs_early: round(late / early, 2),
      step_ms_mean: round(mean(cached), 1),
      step_ms_median: round(median(cached), 1),
      step_ms_best: round(Math.min(...cached), 1),
      token_ms_wall_mean: round(mean(rounds.map((x) => x.tokenWallMs)), 1),
      search_ms_per_token: round(mean(rounds.map((x) => x.tokenWallMs)) - mean(cached), 1),
      first_run_step_ms_mean: round(mean(first.steps.slice(1)), 1),
      step_mb: round(cost.bytes / 1e6),
      step_gflop: round(cost.flops / 1e9, 2),
      total_s_incl_cross_kv: round(mean(rounds.map((x) => x.totalS))),
      others_cpu_share: rounds.some((x) => x.others === null) ? null : round(Math.max(...rounds.map((x) => x.others!)), 2),
      quiet_wait_s: waited,
      floor: stepFloor(cost, round(mean(cached), 1), rates.bw, rates.peak, ratesOthers),
    };
  }

  const imgs = await images(B, 480);
  const { BlipCaptioner } = await import('../src/models/blip/captioner.ts');
  const { BlipFilter } = await import('../src/models/blip/filter.ts');
  const captioner = new BlipCaptioner(cap, B);
  const captionsPerS: Record<string, number> = {};
  for (const method of ['greedy', 'nucleus'] as const) {
    const t = performance.now();
    const res = await captioner.caption(imgs, { ...base, method });
    if (res.some((r) => !r.ok)) throw new Error(`caption failed: ${JSON.stringify(res.find((r) => !r.ok))}`);
    captionsPerS[method] = B / ((performance.now() - t) / 1000);
  }

  const { feeds: itmFeeds, pairs, L, images: imagesForItm } = await itmInputs(fil, px);
  await fil.sessions.text_filter.run(itmFeeds);
  const itmWaited = await waitQuiet(quietWait);
  const { value: itmS, others: itmOthers } = await othersShare(() => timeBest(3, () => fil.sessions.text_filter.run(itmFeeds)));
  const filter = new BlipFilter(fil);
  const tE2e = performance.now();
  const scored = await filter.score(imgs.map((image) => ({ image, texts: ['a picture of a dog on the beach'] })));
  if (scored.some((r) => !r.ok)) throw new Error('score failed');
  const itmE2e = B / ((performance.now() - tE2e) / 1000);

  await releaseModel(cap);
  await releaseModel(fil);
  return {
    precision,
    load_s: round(loadS),
    vision_images_per_s: round(B / visionS),
    vision_gflop_per_image: round(visionFlops(cap) / 1e9, 1),
    vision_achieved_gflops: round((visionFlops(cap) * B) / visionS / 1e9, 1),
    decode_batch: B,
    decode_new_tokens: newTokens,
    decode,
    captions_per_s_greedy: round(captionsPerS.greedy),
    captions_per_s_nucleus: round(captionsPerS.nucleus),
    itm_text_side_pairs_per_s: round(pairs / itmS, 1),
    itm_text_side_others_cpu_share: itmOthers,
    itm_text_side_quiet_wait_s: itmWaited,
    itm_text_side_note: `${pairs} pairs (${imagesForItm} images × ${pairs / imagesForItm} texts), ${L} tokens; graph computes ITM and ITC passes`,
    itm_end_to_end_pairs_per_s: round(itmE2e),
  };
}

/**
 * Side by side on the same weights and inputs, every session open at once and timed in
 * alternating rounds (best of `rounds`): the vision graph's attention built each way
 * layerOptions() can build it. fp32: fused com.microsoft Attention nodes vs plain
 * MatMul/Softmax. int8 (same int8 projections each time): plain MatMul/Softmax, QAttention,
 * MultiHeadAttention over Q, K, V (layerOptions('int8') takes the last). Differences are the
 * largest absolute difference of last_hidden_state against the first variant of the precision.
 */
async function visionVariants(hfCaptioner: string, rounds = 3): Promise<Record<string, unknown>> {
  const cfg = loadBlipConfig(hfCaptioner);
  const weights = new CheckedWeights(openWeightFolder(hfCaptioner), expectedWeights(cfg));
  const S = cfg.vision.imageSize;
  const B = 4;
  const px = f32(Float32Array.from({ length: B * 3 * S * S }, (_, i) => Math.cos(i) * 1.5), [B, 3, S, S]);
  const variants: Record<'fp32' | 'int8', Record<string, LayerOptions>> = {
    fp32: { fused_attention: { fusedAttention: true }, plain_attention: {} },
    int8: { plain_attention: { int8: true }, qattention: { int8: true, quantizedAttention: true }, multi_head_attention: { int8: true, multiHeadAttention: true } },
  };
  const out: Record<string, unknown> = { batch: B, rounds };
  for (const [precision, table] of Object.entries(variants)) {
    const sessions: [string, GraphSession][] = [];
    for (const [name, opts] of Object.entries(table)) {
      const built = buildVisionGraph(cfg, weights, { ...opts, projection: false }).build('v.data');
      const s = await GraphSession.create(`vision_${name}`, { model: built.model, dataFile: built.dataFile, data: graphDataBuffer(built) }, { ...runtime, precision: precision as 'fp32' | 'int8' });
      await s.run({ pixel_values: f32(new Float32Array(3 * S * S), [1, 3, S, S]) });
      sessions.push([name, s]);
    }
    const best = new Map<string, number>();
    const results = new Map<string, Float32Array>();
    for (let r = 0; r < rounds; r++) {
      for (const [name, s] of sessions) {
        const t = performance.now();
        const y = (await s.run({ pixel_values: px })).last_hidden_state.data as Float32Array;
        best.set(name, Math.min(best.get(name) ?? Infinity, (performance.now() - t) / 1000));
        results.set(name, y);
      }
    }
    const first = sessions[0][0];
    const ref = results.get(first)!;
    out[precision] = Object.fromEntries(sessions.map(([name]) => {
      const y = results.get(name)!;
      let diff = 0;
      for (let i = 0; i < y.length; i++) diff = Math.max(diff, Math.abs(y[i] - ref[i]));
      return [name, { images_per_s: round(B / best.get(name)!), vs_first: round(best.get(first)! / best.get(name)!, 2), max_abs_diff_vs_first: diff }];
    }));
    for (const [, s] of sessions) await s.release();
  }
  weights.close();
  return out;
}

/**
 * The floor of a decode step: its bytes at the measured streaming bandwidth or its FLOPs at the
 * MatMul peak, whichever is slower (at batch 8 the bytes are: the step is memory-bound), and the
 * fraction of that floor the mean step reaches (1 = at the floor).
 */
function stepFloor(cost: { bytes: number; flops: number }, stepMs: number, bw: StreamRates, peakGflops: number, others: number | null): Record<string, unknown> {
  const gbps = bestRate(bw);
  const memoryMs = (cost.bytes / (gbps * 1e9)) * 1e3;
  const computeMs = (cost.flops / (peakGflops * 1e9)) * 1e3;
  const floor = Math.max(memoryMs, computeMs);
  return {
    floor_ms: round(floor, 1), memory_ms: round(memoryMs, 1), compute_ms: round(computeMs, 1),
    fraction_of_floor: round(floor / stepMs, 2), bandwidth: bw, matmul_peak_gflops: round(peakGflops, 1), rates_others_cpu_share: others,
  };
}

const root = mkdtempSync(join(tmpdir(), 'capfilt-bench-'));
try {
  const tGen = performance.now();
  writeRandomBlip(join(root, 'hf'));
  const genS = (performance.now() - tGen) / 1000;
  const tConv = performance.now();
  await convert(join(root, 'hf'), join(root, 'fp32'), 'fp32');
  const convertS = (performance.now() - tConv) / 1000;
  // The vision MLP's shapes (batch 8 × 577 tokens, 768 → 3072), chained as bench/clip.ts does:
  // a single-MatMul graph reads 10–20% low and overstated the encoder's fraction of peak.
  const peak = await chainedMatmulPeak(runtime, [8 * 577, 768, 3072], 2);
  const fp32 = await benchPrecision(join(root, 'fp32'), 'fp32');
  const result: Record<string, unknown> = {
    bench: 'models',
    machine: machine(),
    threads,
    dims: 'BLIP base: vision 768/12 layers/384 px/16 patch, text 768/12 layers, vocab 30524 (random weights)',
    random_weights_write_s: round(genS),
    convert_s: round(convertS),
    matmul_peak_gflops: round(peak, 1),
    fp32,
    vision_fraction_of_matmul_peak: round((fp32.vision_achieved_gflops as number) / peak),
    vision_attention_variants: await visionVariants(join(root, 'hf', 'captioner')),
  };
  if (withInt8) {
    await convert(join(root, 'hf'), join(root, 'int8'), 'int8');
    // What the int8 graphs' products can reach here: 1.9× the fp32 peak on an AVX2 CPU, more with VNNI.
    result.int8_matmul_peak_gops = round(await int8MatmulPeak(runtime), 1);
    const int8 = await benchPrecision(join(root, 'int8'), 'int8');
    result.int8 = int8;
    result.int8_vs_fp32 = {
      vision: round((int8.vision_images_per_s as number) / (fp32.vision_images_per_s as number), 2),
      itm_text_side: round((int8.itm_text_side_pairs_per_s as number) / (fp32.itm_text_side_pairs_per_s as number), 2),
      captions_greedy: round((int8.captions_per_s_greedy as number) / (fp32.captions_per_s_greedy as number), 2),
    };
    result.itm_text_side_alternating = await itmAlternating(join(root, 'fp32'), join(root, 'int8'));
  }
  result.peak_rss_mb = Math.round(process.resourceUsage().maxRSS / 1024);
  if (args.includes('--clip')) {
    const { parseClipBenchArgs, runClipBench } = await import('./clip.ts');
    result.clip = await runClipBench(parseClipBenchArgs(args));
  }
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
} finally {
  if (!args.includes('--keep')) rmSync(root, { recursive: true, force: true });
}
