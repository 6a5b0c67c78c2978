import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { loadConfig, type LoadedConfig, type Override } from '../config/load.ts';
import { captionMatchesScene, generateDemoPair, renderScene } from '../demo/index.ts';
import { readShardParquet } from '../io/writers/shard-parquet.ts';
import type { RowRecord } from '../core/records.ts';
import { STAGE_ORDER } from '../core/shard.ts';
import { outputColumns } from '../pipeline/stages/table.ts';
import type { RedisEndpoint } from '../workers/redis-setup.ts';
import { runPipeline } from './run.ts';
import type { RunSummary } from './summary.ts';

/**
 * `capfilt demo`: the whole pipeline on a generated noisy dataset with known ground truth.
 * Pairs come from the demo generator (src/demo), their images are rendered on request by an
 * HTTP server on 127.0.0.1 (allowlisted in the SSRF guard for this run only), and the run uses
 * the bundled demo model. Afterwards the output parquet is compared with the ground truth:
 * filter precision/recall on the web texts (positive = the web text describes the image) and
 * the share of synthetic captions that describe their image.
 */
export const PACKAGE_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const DEMO_MODEL_DIR = join(PACKAGE_ROOT, 'models', 'demo');

export interface DemoOptions {
  rows: number;
  seed: number;
  out: string;
  /** Image side of the rendered scenes (the demo model was trained at 160 px). */
  size: number;
  /** Config layers from the command line (file, env, flags); the demo adds its own defaults below them. */
  configFile: string | null;
  overrides: Override[];
  env: Record<string, string | undefined>;
  log: Logger;
  progress: 'bar' | 'json' | 'none';
  signal?: AbortSignal;
  redis?: RedisEndpoint;
}

export interface DemoQuality {
  /** Of the web texts the filter kept, the share that really describe their image. */
  filterPrecision: number | null;
  /** Of the web texts that describe their image, the share the filter kept. */
  filterRecall: number | null;
  /** Share of synthetic captions that describe their image (demo grammar check). */
  captionerAccuracy: number | null;
  /** Share of rows whose key.txt caption describes the image (kept rows). */
  selectedAccuracy: number | null;
  webTexts: { correct: number; kept: number; keptCorrect: number };
  captions: number;
  byNoise: Record<string, { rows: number; webKept: number }>;
}

export interface DemoSummary {
  run: RunSummary;
  quality: DemoQuality;
  input: string;
}

/** Serves `/img/<index>.jpg` for the pairs of `seed`, rendered on request. */
export async function serveDemoImages(seed: number, size: number): Promise<{ url: string; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    const m = /^\/img\/(\d+)\.jpg$/.exec(req.url ?? '');
    if (!m) return void res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    const pair = generateDemoPair(seed, Number(m[1]));
    renderScene(pair.scene, { size, format: 'jpeg', quality: 90 }).then(
      (bytes) => res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': bytes.length }).end(bytes),
      (e: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${String(e)}\n`),
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }),
  };
}

export function writeDemoInput(file: string, baseUrl: string, seed: number, rows: number): void {
  const lines: string[] = [];
  for (let i = 0; i < rows; i++) {
    const p = generateDemoPair(seed, i);
    lines.push(JSON.stringify({ url: `${baseUrl}/img/${i}.jpg`, caption: p.webText, noise: p.label, demo_index: i }));
  }
  writeFileSync(file, `${lines.join('\n')}\n`);
}

/** Compares the output rows with the generator's ground truth. */
export function demoQuality(records: RowRecord[], seed: number): DemoQuality {
  const ratio = (a: number, b: number) => (b ? a / b : null);
  let correct = 0;
  let kept = 0;
  let keptCorrect = 0;
  let captions = 0;
  let captionsRight = 0;
  let selected = 0;
  let selectedRight = 0;
  const byNoise: DemoQuality['byNoise'] = {};
  for (const r of records) {
    const index = Number(r.extra.demo_index);
    const label = String(r.extra.noise);
    const pair = generateDemoPair(seed, index);
    const webScore = r.scores.find((s) => s.source === 'web');
    const webKept = webScore?.kept === true;
    const b = (byNoise[label] ??= { rows: 0, webKept: 0 });
    b.rows++;
    if (r.status === 'failed') continue;
    if (webKept) b.webKept++;
    if (label === 'correct') correct++;
    if (webKept) {
      kept++;
      if (label === 'correct') keptCorrect++;
    }
    for (const c of r.captions) {
      captions++;
      if (captionMatchesScene(c, pair.scene)) captionsRight++;
    }
    if (r.status === 'kept' && r.selected !== null) {
      selected++;
      if (captionMatchesScene(r.selected, pair.scene)) selectedRight++;
    }
  }
  return {
    filterPrecision: ratio(keptCorrect, kept),
    filterRecall: ratio(keptCorrect, correct),
    captionerAccuracy: ratio(captionsRight, captions),
    selectedAccuracy: ratio(selectedRight, selected),
    webTexts: { correct, kept, keptCorrect },
    captions,
    byNoise,
  };
}

export function demoConfig(o: DemoOptions, input: string, imagesUrl: string): LoadedConfig {
  const d = (path: string, value: unknown): Override => ({ path, value, source: 'capfilt demo' });
  // The demo's own settings sit between default.yaml and the user's layers: a user's file, env
  // or flag still wins, except the input, output and the loopback allowlist the demo needs.
  const probe = loadConfig({ file: o.configFile, env: o.env, overrides: o.overrides });
  // Every stage, CLIP's when a CLIP model is configured (--clip-model / models.clip).
  const demoDefaults: Override[] = [
    d('models.captioner', DEMO_MODEL_DIR), d('models.filter', DEMO_MODEL_DIR),
    d('image.size', o.size), d('shards.rows', Math.max(50, Math.min(250, Math.ceil(o.rows / 8)))),
    d('input.saveAdditionalColumns', ['noise', 'demo_index']), d('pipeline.stages', STAGE_ORDER.filter((s) => s !== 'clip' || probe.config.models.clip !== null)),
  ].filter((x) => !probe.isExplicit(x.path));
  const allow = [...new Set([...probe.config.download.ssrfAllowlist, new URL(imagesUrl).hostname])];
  return loadConfig({
    file: o.configFile,
    env: o.env,
    overrides: [...demoDefaults, ...o.overrides, d('input.path', input), d('output.dir', o.out), d('input.format', 'jsonl'), d('download.ssrfAllowlist', allow)],
  });
}

export async function runDemo(o: DemoOptions): Promise<DemoSummary> {
  mkdirSync(o.out, { recursive: true });
  const images = await serveDemoImages(o.seed, o.size);
  try {
    const input = join(o.out, 'demo-input.jsonl');
    writeDemoInput(input, images.url, o.seed, o.rows);
    const loaded = demoConfig(o, input, images.url);
    const run = await runPipeline({
      loaded,
      workers: true,
      progress: o.progress,
      log: o.log,
      signal: o.signal,
      labels: { demo: `seed ${o.seed}, ${o.rows} rows` },
      redis: o.redis,
    });
    const parquets = readdirSync(o.out).filter((f) => /^\d{5}\.parquet$/.test(f)).sort();
    const records = (await Promise.all(parquets.map((f) => readShardParquet(join(o.out, f), outputColumns())))).flat();
    return { run, quality: demoQuality(records, o.seed), input };
  } finally {
    await images.close();
  }
}
