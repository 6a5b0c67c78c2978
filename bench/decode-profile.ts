/**
 * Where a cached decode step's time goes: `npm run bench:decode-profile`.
 * Base-size random-weight captioner (bench/random-blip.ts), batch 8, greedy, 20 new tokens,
 * the decoder graph run under ORT's profiler. Prints one JSON object: the step time seen from
 * JS, ORT's whole-run time and the sum of its kernel times (the rest is session overhead and
 * what the JS side does around a run), and per operator type (the LM head apart from the other
 * Gemms) the kernel time per step, its share, the bytes its inputs hold per step and the rate
 * they were read at, beside the streaming rate measured in the same process (bench/bandwidth.ts),
 * and each cached step's time seen from JS and inside ORT, in order.
 * A decode step is memory-bound: an operator reading well below the streaming rate is where
 * time can still be won.
 * Options: --threads N (default 2), --precision fp32|int8 (default fp32), --steps N (new tokens,
 * default 20: the prompt step, then N − 1 cached steps, which are what the figures cover),
 * --method greedy|beam|nucleus (default greedy; beam keeps 3 beams per image, 24 rows).
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { convert } from '../src/models/blip/convert.ts';
import { OrtDecoderSession } from '../src/models/blip/decoder-session.ts';
import { MANIFEST_FORMAT, loadModel } from '../src/models/blip/loader.ts';
import { readManifest, manifestGraphs } from '../src/models/runtime/manifest.ts';
import { GraphSession, f32 } from '../src/models/runtime/sessions.ts';
import { generate } from '../src/models/runtime/generation/index.ts';
import type { GenerationOptions } from '../src/models/runtime/generation/types.ts';
import type { RuntimeOptions } from '../src/models/runtime/types.ts';
import { writeRandomBlip } from './random-blip.ts';
import { othersShare } from './clip.ts';
import { machine, round } from './timing.ts';
import { TimedSession } from './timed-session.ts';
import { streamBandwidth } from './bandwidth.ts';

const args = process.argv.slice(2);
const opt = (name: string, fallback: string): string => (args.includes(name) ? args[args.indexOf(name) + 1] : fallback);
const threads = Number(opt('--threads', '2'));
const precision = opt('--precision', 'fp32') as 'fp32' | 'int8';
const newTokens = Number(opt('--steps', '20'));
const method = opt('--method', 'greedy') as GenerationOptions['method'];
if (!['greedy', 'beam', 'nucleus'].includes(method)) throw new Error(`--method: greedy, beam or nucleus, not ${method}`);
const runtime: RuntimeOptions = { device: 'cpu', threads, precision };

interface ProfileEvent {
  cat: string;
  name: string;
  dur: number;
  args?: { op_name?: string; input_type_shape?: Record<string, number[]>[]; output_type_shape?: Record<string, number[]>[] };
}

const ELEMENT_BYTES: Record<string, number> = { float: 4, int64: 8, int32: 4, int8: 1, uint8: 1 };

/** The first tensor's shape of a profile input or output list. */
const firstShape = (list?: Record<string, number[]>[]): number[] | undefined => (list?.[0] ? Object.values(list[0])[0] : undefined);

const INT8_MATMULS = new Set(['DynamicQuantizeMatMul', 'MatMulIntegerToFloat', 'MatMulInteger']);
const MATMULS = new Set(['Gemm', 'MatMul', 'FusedMatMul', ...INT8_MATMULS]);

/**
 * Bytes a kernel reads: its inputs as the profile lists them (activations, caches), plus, for a
 * matrix product whose weight ORT pre-packed (the profile then lists the activation and the
 * bias, no [K, N] input), the weight K × N at its element size.
 */
function inputBytes(e: ProfileEvent): number {
  const inputs = e.args?.input_type_shape ?? [];
  let bytes = 0;
  for (const input of inputs) {
    for (const [type, shape] of Object.entries(input)) bytes += (ELEMENT_BYTES[type] ?? 4) * shape.reduce((a, b) => a * b, 1);
  }
  const op = e.args?.op_name ?? '';
  const a = firstShape(inputs);
  const y = firstShape(e.args?.output_type_shape);
  if (MATMULS.has(op) && a && y) {
    const [K, N] = [a[a.length - 1], y[y.length - 1]];
    const listed = inputs.slice(1).some((i) => Object.values(i).some((sh) => sh.length >= 2 && sh.includes(K) && sh.includes(N)));
    if (!listed) bytes += K * N * (INT8_MATMULS.has(op) ? 1 : 4);
  }
  return bytes;
}

const root = mkdtempSync(join(tmpdir(), 'capfilt-decode-profile-'));
try {
  writeRandomBlip(join(root, 'hf'));
  await convert(join(root, 'hf'), join(root, 'model'), precision);
  const dir = join(root, 'model', 'captioner');
  const cap = await loadModel(dir, runtime);
  const decoderFile = manifestGraphs(dir, readManifest(dir, [MANIFEST_FORMAT]), ['decoder']).decoder;
  const profiled = await GraphSession.create('decoder', decoderFile, runtime, { enableProfiling: true, profileFilePrefix: join(root, 'decoder-profile') });
  const S = cap.cfg.vision.imageSize;
  const B = 8;
  const px = f32(Float32Array.from({ length: B * 3 * S * S }, (_, i) => Math.sin(i) * 1.5), [B, 3, S, S]);
  const embeds = (await cap.sessions.vision.run({ pixel_values: px })).last_hidden_state;
  const prefix = [cap.special.bos, ...cap.tokenizer!.encodePlain('a picture of ')];
  const total = prefix.length + newTokens;
  const gen: GenerationOptions = {
    method, maxLength: total, minLength: total, numBeams: 3, lengthPenalty: 1, topP: 0.9, topK: 0,
    temperature: 1, repetitionPenalty: 1.1, numReturnSequences: 1, prompt: 'a picture of ', seed: 0,
  };
  const timed = new TimedSession(await OrtDecoderSession.open(cap.cfg, cap.sessions.cross_kv, profiled, embeds, undefined, cap.rowGraphs));
  const { others } = await othersShare(() => generate(timed, Array.from({ length: B }, () => prefix), gen, cap.special, Array.from({ length: B }, (_, i) => `k${i}`)));
  timed.close();
  profiled.endProfiling();
  const file = readdirSync(root).find((f) => f.startsWith('decoder-profile'));
  if (!file) throw new Error('ORT wrote no profile file');
  const events = JSON.parse(readFileSync(join(root, file), 'utf8')) as ProfileEvent[];
  const runs = events.filter((e) => e.cat === 'Session' && e.name === 'model_run');
  const kernels = events.filter((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time'));
  // Run 0 is the prefix step (the prompt's tokens at once); the rest are cached one-token steps.
  const cached = runs.length - 1;
  const perKernelRun = kernels.length / runs.length;
  const stepKernels = kernels.slice(perKernelRun);
  const vocab = cap.cfg.text.vocabSize;
  const byOp = new Map<string, { us: number; bytes: number }>();
  for (const k of stepKernels) {
    const op = k.args?.op_name ?? '?';
    const lmHead = MATMULS.has(op) && (k.args?.output_type_shape ?? []).some((o) => Object.values(o).some((sh) => sh[sh.length - 1] === vocab));
    const a = firstShape(k.args?.input_type_shape);
    const y = firstShape(k.args?.output_type_shape);
    // Matrix products apart by weight shape (K × N): small ones pay more per byte for dispatch.
    const key = lmHead ? `${op} (LM head)` : MATMULS.has(op) && a && y ? `${op} ${a[a.length - 1]}×${y[y.length - 1]}` : op;
    const acc = byOp.get(key) ?? { us: 0, bytes: 0 };
    acc.us += k.dur;
    acc.bytes += inputBytes(k);
    byOp.set(key, acc);
  }
  const kernelUs = stepKernels.reduce((a, k) => a + k.dur, 0);
  const table = Object.fromEntries([...byOp].sort((a, b) => b[1].us - a[1].us).map(([k, v]) => [k, {
    ms_per_step: round(v.us / 1000 / cached, 2),
    share: round(v.us / kernelUs, 3),
    input_mb_per_step: round(v.bytes / 1e6 / cached, 1),
    read_gbps: round(v.bytes / (v.us * 1e3), 1),
  }]));
  const bandwidth = await streamBandwidth(runtime);
  const stepMs = timed.ms.slice(1);
  process.stdout.write(`${JSON.stringify({
    bench: 'decode-profile',
    machine: machine(),
    precision,
    threads,
    method,
    rows: method === 'beam' ? B * gen.numBeams : B,
    steps: cached,
    others_cpu_share: others,
    step_ms_js_mean: round(stepMs.reduce((a, b) => a + b, 0) / stepMs.length, 2),
    step_ms_js_best: round(Math.min(...stepMs), 2),
    model_run_ms_mean: round(runs.slice(1).reduce((a, r) => a + r.dur, 0) / 1000 / cached, 2),
    kernel_ms_mean: round(kernelUs / 1000 / cached, 2),
    kernels_per_step: perKernelRun,
    // Per cached step in order: a step that gets faster or slower with the length shows here.
    step_ms_js_each: stepMs.map((m) => round(m, 1)),
    model_run_ms_each: runs.slice(1).map((r) => round(r.dur / 1000, 1)),
    stream_bandwidth: bandwidth,
    by_op: table,
  }, null, 2)}\n`);
} finally {
  rmSync(root, { recursive: true, force: true });
}
