/**
 * Pipeline benchmark. Prints one JSON object.
 *   npm run bench:pipeline -- [--rows 400] [--model models/demo] [--clip-model models/demo-clip | --no-clip]
 *       [--base] [--rounds 2] [--flat-rows 10000,50000] [--duplicates mark|off] [--skip-e2e] [--skip-flat]
 *
 * Part 1, orchestration overhead (demo models, demo images served from 127.0.0.1): each stage
 * run alone over the same rows, in this process, with the pipeline's own stage functions,
 * concurrency, batch sizes and inference thread; then the whole pipeline through Redis/BullMQ
 * with in-process workers whose models were loaded before timing. Reported: end-to-end rows/s,
 * each stage's rows/s alone, and end-to-end / slowest stage alone. Because caption and filter
 * share one CPU (one inference thread, and here only 2 cores), the ratio against the sum of the
 * stages' times alone (the serial bound on this machine) is reported too.
 * With CLIP (the default; demo CLIP, its rule at the card's threshold), the pipeline runs
 * `--rounds` times without and with the clip stage, alternating, on the same warm host: `clip`
 * holds rows/s side by side, the clip stage's rows/s alone and its share of the stage time
 * (alone, and inside each real run from the shards' timings_ms), and whether it is the slowest
 * stage. Every timing records the CPU share other processes took meanwhile (othersCpuShare).
 * `--base` measures the same at released sizes (random-weight BLIP-base and CLIP ViT-B/32).
 *
 * Results (2026-12-07, this shared 2-core machine, models.precision auto):
 * - demo models, 400 rows, 2 rounds: clip stage alone 169 rows/s, caption (the slowest) 139,
 *   filter 169 (others' CPU share 0.02-0.06); CLIP is 31% of the model stages' time alone and
 *   25-26% inside the runs. Runs at a similar share of others (0.49-0.50): 23.9 rows/s without the
 *   clip stage, 18.9 and 20.6 with it (0.79-0.86x); the one quieter run without it (0.26) read 34.0.
 *   Both demo models are tiny (the demo CLIP 1.1 M parameters at 64 px), so CLIP's fixed per-image
 *   cost (decode, PIL-exact bicubic in JS, session call) weighs as much as BLIP's here.
 * - `--base --rows 24 --rounds 1` (others 0.84-0.89 during every stage alone): caption 400 s,
 *   filter 157 s, clip 18.7 s: CLIP ViT-B/32 is 3.3% of the model stages' time (3.7% inside the run
 *   with it, others 0.12) and far from the bottleneck. The two runs' rows/s are not comparable
 *   (others 0.75 without CLIP, 0.12 with): 0.093 and 0.342 rows/s.
 *
 * Part 2, flatness: download+write runs of 10k and 50k rows (unique small JPEGs from 127.0.0.1)
 * against a private redis-server, sampling Redis `used_memory` (INFO memory), the fs staging
 * size and this process's RSS. Peaks should not grow with the row count; the run-wide duplicate
 * index (one Redis key per distinct image, by design) is measured and reported separately, and
 * the keys left at the end are broken down by kind (the stats samples ring is bounded, 240
 * samples with thumbnails, and fills up only in the larger run).
 */
import { setMaxListeners } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import sharp from 'sharp';
import { loadConfig, type LoadedConfig, type Override } from '../src/config/load.ts';
import type { CapfiltConfig } from '../src/config/schema.ts';
import { RedisDuplicateIndex } from '../src/io/duplicates.ts';
import { finalizeRecords } from '../src/pipeline/decisions.ts';
import { serveDemoImages, writeDemoInput, demoQuality, DEMO_CLIP_DIR, DEMO_CLIP_MIN_SCORE, DEMO_MODEL_DIR } from '../src/run/demo.ts';
import type { InputRow } from '../src/io/readers/types.ts';
import { recordOf } from '../src/run/feeder.ts';
import { countRows, readRows } from '../src/pipeline/input.ts';
import { runPipeline } from '../src/run/run.ts';
import { planShards, runIdFor } from '../src/pipeline/shards.ts';
import type { ShardState, StageName } from '../src/core/shard.ts';
import { FsStagingStore } from '../src/pipeline/staging/fs.ts';
import { logger } from '../src/core/logger.ts';
import { WorkerHost } from '../src/workers/host.ts';
import { startPrivateRedis } from '../src/workers/private-redis.ts';
import { StageRegistry } from '../src/workers/stages.ts';
import { writeRandomBlip } from './random-blip.ts';
import { CLIP_SIZES, writeRandomClip } from './random-clip.ts';
import { othersShare } from './timing.ts';
import { runtimeSetting } from '../src/models/runtime/precision.ts';

const { values } = parseArgs({
  options: {
    rows: { type: 'string', default: '400' },
    model: { type: 'string', default: DEMO_MODEL_DIR },
    /** CLIP model of the clip stage; the pipeline runs with and without it, interleaved. */
    'clip-model': { type: 'string', default: DEMO_CLIP_DIR },
    'no-clip': { type: 'boolean', default: false },
    /**
     * Released sizes instead of the demo models: random-weight BLIP-base (captioner + filter) and
     * CLIP ViT-B/32, written to a temporary folder (use a small --rows: BLIP-base decodes on CPU).
     */
    base: { type: 'boolean', default: false },
    /** Pipeline runs per variant (with / without CLIP), alternating. */
    rounds: { type: 'string', default: '2' },
    'flat-rows': { type: 'string', default: '10000,50000' },
    'skip-e2e': { type: 'boolean', default: false },
    'skip-flat': { type: 'boolean', default: false },
    /** image.duplicates of the flatness runs: mark (the default) keeps a Redis key per distinct image. */
    duplicates: { type: 'string', default: 'mark' },
  },
});

const log = logger().child({ bench: 'pipeline' });
const work = mkdtempSync(join(tmpdir(), 'capfilt-bench-'));
const set = (path: string, value: unknown): Override => ({ path, value, source: 'bench' });

async function withPrivateRedis<T>(fn: (url: string) => Promise<T>): Promise<T> {
  const r = await startPrivateRedis();
  if (!r) throw new Error('bench:pipeline needs redis-server on PATH for a clean memory measurement');
  try {
    return await fn(r.url);
  } finally {
    await r.stop();
  }
}

/** Runs `fn` over items with `n` in flight. */
async function pool<T>(items: T[], n: number, fn: (x: T) => Promise<void>): Promise<void> {
  let i = 0;
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, async () => {
    while (i < items.length) await fn(items[i++]);
  }));
}

async function shardStates(config: CapfiltConfig, runId: string): Promise<ShardState[]> {
  const file = config.input.path!;
  const shards = planShards(runId, file, [{ file, rows: await countRows(file, config) }], config.shards.rows);
  const rows: InputRow[] = [];
  for await (const r of readRows(file, config)) rows.push(r);
  return shards.map((s) => ({ shard: s, records: rows.slice(s.rowStart, s.rowStart + s.rowCount).map((r, i) => recordOf(r, s, i, config.shards.rows)), stagesDone: [], timings: {} }));
}

async function orchestrationOverhead(redisUrl: string) {
  const rows = Number(values.rows);
  const seed = 20261129;
  const images = await serveDemoImages(seed, 160);
  const dir = join(work, 'e2e');
  const input = join(work, 'demo-input.jsonl');
  writeDemoInput(input, images.url, seed, rows);
  if (values.base) {
    writeRandomBlip(join(work, 'blip-base'));
    writeRandomClip(join(work, 'clip-vit-b-32'), CLIP_SIZES['vit-b-32']);
  }
  const model = values.base ? join(work, 'blip-base') : resolve(values.model);
  const clipModel = values['no-clip'] ? null : values.base ? join(work, 'clip-vit-b-32') : resolve(values['clip-model']);
  // With CLIP: the clip stage between filter and write, its rule at the demo CLIP's threshold
  // (another model's scores are only scored, no rule).
  const clipOverrides = (on: boolean): Override[] => (on && clipModel
    ? [set('pipeline.stages', ['download', 'caption', 'filter', 'clip', 'write']), set('models.clip', clipModel), set('clip.minScore', clipModel === DEMO_CLIP_DIR ? DEMO_CLIP_MIN_SCORE : null)]
    : [set('pipeline.stages', ['download', 'caption', 'filter', 'write'])]);
  const loadedFor = (out: string, prefix: string, clip: boolean): LoadedConfig =>
    loadConfig({
      env: {},
      overrides: [
        set('redis.url', redisUrl), set('redis.prefix', prefix), set('input.path', input), set('input.format', 'jsonl'), set('output.dir', out),
        set('input.saveAdditionalColumns', ['noise', 'demo_index']), set('models.captioner', model), set('models.filter', model),
        set('image.size', 160), set('shards.rows', Math.max(25, Math.ceil(rows / 8))), set('download.ssrfAllowlist', ['127.0.0.1']),
        ...clipOverrides(clip),
      ],
    });

  // Each stage alone, with the workers' own stage bindings (same inference thread, batch sizes).
  const aloneCfg = loadedFor(join(dir, 'alone'), 'bench-alone', clipModel !== null).config;
  const staging = new FsStagingStore(join(dir, 'alone-staging'));
  const redis = new Redis(redisUrl);
  const registry = new StageRegistry({
    // Each stage runs alone here, as one model stage on the host.
    runtime: runtimeSetting(aloneCfg.models, 1),
    log,
    duplicateIndex: (runId) => new RedisDuplicateIndex(redis, `bench-alone:run:${runId}:dup`),
  });
  const states = await shardStates(aloneCfg, 'alonerun');
  const alone: Partial<Record<StageName, { seconds: number; rowsPerSec: number; othersCpuShare: number | null }>> = {};
  const ctrl = new AbortController();
  setMaxListeners(0, ctrl.signal);
  for (const stage of aloneCfg.pipeline.stages) {
    const fn = await registry.get(stage, aloneCfg);
    if (stage === 'write') for (const s of states) finalizeRecords(s.records, aloneCfg.filter.selection);
    const t0 = performance.now();
    const { others } = await othersShare(() => pool(states, aloneCfg.pipeline.concurrency[stage], (s) => fn(s, { config: aloneCfg, staging, log, signal: ctrl.signal })));
    const seconds = (performance.now() - t0) / 1000;
    alone[stage] = { seconds: round(seconds), rowsPerSec: round(rows / seconds), othersCpuShare: others };
  }
  await registry.close();
  redis.disconnect();
  const quality = demoQuality(states.flatMap((s) => s.records), seed);

  // The whole pipeline, models loaded before the clock starts: one host with every stage serves
  // both variants (a run enqueues only its own stages), which alternate, without CLIP first.
  const variants = clipModel ? [false, true] : [false];
  const hostCfg = loadedFor(join(dir, 'host'), 'bench-e2e', clipModel !== null).config;
  const host = new WorkerHost({ config: hostCfg, stages: hostCfg.pipeline.stages, log });
  await host.start();
  await host.warm(hostCfg);
  let peakRss = 0;
  const rss = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 100);
  const runs: Record<'withoutClip' | 'withClip', Array<Record<string, unknown>>> = { withoutClip: [], withClip: [] };
  let last: Awaited<ReturnType<typeof runPipeline>> | null = null;
  for (let r = 0; r < Number(values.rounds); r++) {
    for (const clip of variants) {
      const out = join(dir, `out-${clip ? 'clip' : 'noclip'}-${r}`);
      const loaded = loadedFor(out, 'bench-e2e', clip);
      const { value: s, others } = await othersShare(() => runPipeline({ loaded, workers: true, host, progress: 'none', log }));
      last = s;
      // Stage time inside the real run: each shard's timings_ms (wall time of its stage call).
      const stageMs: Record<string, number> = {};
      for (const f of readdirSync(out).filter((x) => /^\d{5}_stats\.json$/.test(x))) {
        for (const [k, v] of Object.entries(JSON.parse(readFileSync(join(out, f), 'utf8')).timings_ms as Record<string, number>)) stageMs[k] = (stageMs[k] ?? 0) + v;
      }
      const modelMs = ['caption', 'filter', 'clip'].reduce((n, k) => n + (stageMs[k] ?? 0), 0);
      runs[clip ? 'withClip' : 'withoutClip'].push({
        rowsPerSec: round(s.rowsPerSec), seconds: round(s.seconds), reconciled: s.reconciled, kept: s.kept, filtered: s.filtered, failed: s.failed,
        othersCpuShare: others, stageSeconds: Object.fromEntries(Object.entries(stageMs).map(([k, v]) => [k, round(v / 1000)])),
        ...(clip ? { clipShareOfModelStageTime: round((stageMs.clip ?? 0) / modelMs) } : {}),
      });
      rmSync(out, { recursive: true, force: true });
    }
  }
  clearInterval(rss);
  await host.close();
  await images.close();

  const rates = Object.entries(alone).map(([k, v]) => ({ stage: k, ...v! }));
  const slowest = rates.reduce((a, b) => (b.rowsPerSec < a.rowsPerSec ? b : a));
  const serialSeconds = rates.reduce((n, r) => n + r.seconds, 0);
  const best = (xs: Array<Record<string, unknown>>) => Math.max(...xs.map((x) => x.rowsPerSec as number));
  const withoutClip = best(runs.withoutClip);
  const s = last!;
  return {
    rows,
    shardRows: hostCfg.shards.rows,
    e2e: { rowsPerSec: round(s.rowsPerSec), seconds: round(s.seconds), reconciled: s.reconciled, kept: s.kept, filtered: s.filtered, failed: s.failed },
    // Side by side from this run: rows/s of the whole pipeline without and with the clip stage
    // (best of the rounds; every round listed with the CPU share other processes took meanwhile).
    clip: clipModel ? {
      model: clipModel,
      rowsPerSecWithoutClip: round(withoutClip),
      rowsPerSecWithClip: round(best(runs.withClip)),
      withOverWithout: round(best(runs.withClip) / withoutClip),
      clipAloneRowsPerSec: alone.clip?.rowsPerSec ?? null,
      // CLIP's share of the stage time of each stage alone, and of the model stages alone.
      clipShareOfStageTimeAlone: alone.clip ? round(alone.clip.seconds / serialSeconds) : null,
      clipShareOfModelStageTimeAlone: alone.clip ? round(alone.clip.seconds / ['caption', 'filter', 'clip'].reduce((n, k) => n + (alone[k as StageName]?.seconds ?? 0), 0)) : null,
      clipIsBottleneck: slowest.stage === 'clip',
      runs,
    } : null,
    alone,
    slowestStage: slowest.stage,
    e2eOverSlowestAlone: round(s.rowsPerSec / slowest.rowsPerSec),
    e2eOverSerialBound: round(s.rowsPerSec / (rows / serialSeconds)),
    workerPeakRssMB: round(peakRss / 2 ** 20),
    demoQualityAlone: { filterPrecision: quality.filterPrecision, filterRecall: quality.filterRecall, captionerAccuracy: quality.captionerAccuracy },
  };
}

/** Loopback server: `/img/<n>.jpg` = one small JPEG + 8 bytes after its end marker, unique per n. */
async function uniqueImageServer() {
  const base = await sharp({ create: { width: 96, height: 72, channels: 3, background: { r: 40, g: 120, b: 200 } } }).jpeg({ quality: 80 }).toBuffer();
  const server = createServer((req, res) => {
    const m = /^\/img\/(\d+)\.jpg$/.exec(req.url ?? '');
    if (!m) return void res.writeHead(404).end();
    const tail = Buffer.alloc(8);
    tail.writeBigUInt64BE(BigInt(m[1]));
    res.writeHead(200, { 'content-type': 'image/jpeg' }).end(Buffer.concat([base, tail]));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }) };
}

async function flatness(n: number) {
  return withPrivateRedis(async (redisUrl) => {
    const images = await uniqueImageServer();
    const dir = join(work, `flat-${n}`);
    const input = join(work, `flat-${n}.csv`);
    const lines = ['url,caption'];
    for (let i = 0; i < n; i++) lines.push(`${images.url}/img/${i}.jpg,image ${i}`);
    writeFileSync(input, `${lines.join('\n')}\n`);
    const loaded = loadConfig({
      env: {},
      overrides: [
        set('redis.url', redisUrl), set('redis.prefix', 'bench-flat'), set('input.path', input), set('output.dir', join(dir, 'out')),
        set('pipeline.stages', ['download', 'write']), set('shards.rows', 1000), set('pipeline.maxInFlightShards', 4),
        set('download.ssrfAllowlist', ['127.0.0.1']), set('download.concurrency', 64), set('download.perHostConcurrency', 64), set('image.resizeMode', 'no'),
        set('image.duplicates', values.duplicates),
      ],
    });
    const redis = new Redis(redisUrl);
    const staging = new FsStagingStore(join(dir, 'out', '.staging'));
    const runId = runIdFor(join(dir, 'out'));
    const usedMemory = async () => Number(/used_memory:(\d+)/.exec(await redis.info('memory'))![1]);
    const baseline = await usedMemory();
    let peakRedis = 0;
    let peakStaging = 0;
    let peakRss = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        peakRedis = Math.max(peakRedis, await usedMemory());
        peakStaging = Math.max(peakStaging, await staging.sizeBytes(runId));
        peakRss = Math.max(peakRss, process.memoryUsage().rss);
        await new Promise((r) => setTimeout(r, 200));
      }
    })();
    const s = await runPipeline({ loaded, workers: true, progress: 'none', log });
    sampling = false;
    await sampler;
    // The duplicate index's bucket strings differ in size: sum MEMORY USAGE over all of them.
    let dupBytes = 0;
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `bench-flat:run:${runId}:dup:*`, 'COUNT', 5000);
      cursor = next;
      for (const k of keys) dupBytes += Number(await redis.memory('USAGE', k));
    } while (cursor !== '0');
    // Where Redis memory sits at the end, by kind of key (MEMORY USAGE of every key).
    const breakdown: Record<string, number> = {};
    cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', 'bench-flat:*', 'COUNT', 5000);
      cursor = next;
      for (const k of keys) {
        if (k.includes(':dup:')) continue;
        const kind = k.includes(':stats:') ? (k.endsWith(':samples') ? 'statsSamplesRing' : 'statsOther') : /:(download|caption|filter|write):/.test(k) ? 'queues' : k.includes(':run:') ? 'runState' : 'other';
        breakdown[kind] = (breakdown[kind] ?? 0) + Number(await redis.memory('USAGE', k));
      }
    } while (cursor !== '0');
    const end = await usedMemory();
    redis.disconnect();
    await images.close();
    rmSync(dir, { recursive: true, force: true });
    return {
      rows: n,
      rowsPerSec: round(s.rowsPerSec),
      reconciled: s.reconciled,
      redisPeakAboveBaselineMB: round((peakRedis - baseline) / 2 ** 20),
      redisAtEndAboveBaselineMB: round((end - baseline) / 2 ** 20),
      duplicateIndexMB: round(dupBytes / 2 ** 20),
      redisPeakExcludingDuplicateIndexMB: round((peakRedis - baseline - dupBytes) / 2 ** 20),
      keysAtEndMB: Object.fromEntries(Object.entries(breakdown).map(([k, v]) => [k, round(v / 2 ** 20)])),
      stagingPeakMB: round(peakStaging / 2 ** 20),
      processPeakRssMB: round(peakRss / 2 ** 20),
    };
  });
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

try {
  const result: Record<string, unknown> = { bench: 'pipeline', node: process.version, duplicates: values.duplicates };
  if (!values['skip-e2e']) result.orchestration = await withPrivateRedis(orchestrationOverhead);
  if (!values['skip-flat']) {
    const sizes = values['flat-rows'].split(',').map(Number);
    const runs = [];
    for (const n of sizes) runs.push(await flatness(n));
    result.flatness = runs;
    if (runs.length >= 2) {
      const [a, b] = [runs[0], runs[runs.length - 1]];
      result.flatnessRatios = {
        rows: round(b.rows / a.rows),
        redisPeakExcludingDuplicateIndex: round(b.redisPeakExcludingDuplicateIndexMB / a.redisPeakExcludingDuplicateIndexMB),
        redisPeak: round(b.redisPeakAboveBaselineMB / a.redisPeakAboveBaselineMB),
        stagingPeak: round(b.stagingPeakMB / a.stagingPeakMB),
        processPeakRss: round(b.processPeakRssMB / a.processPeakRssMB),
      };
    }
  }
  process.stdout.write(`${JSON.stringify(result)}\n`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
