import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { loadConfig, type LoadedConfig, type Override } from '../config/load.ts';
import { captionMatchesScene, generateDemoPair, renderScene } from '../demo/index.ts';
import { SHAPE_KINDS } from '../demo/vocab.ts';
import { CapfiltError } from '../core/errors.ts';
import { isS3Url } from '../io/storage/s3-url.ts';
import { readShardParquet } from '../io/writers/shard-parquet.ts';
import { scoreOf, type RowRecord } from '../core/records.ts';
import { isCapfiltError } from '../core/errors.ts';
import { STAGE_ORDER } from '../core/shard.ts';
import { outputColumns } from '../pipeline/stages/table.ts';
import type { RedisEndpoint } from '../workers/redis-setup.ts';
import { runPipeline } from './run.ts';
import type { RunSummary } from './summary.ts';

/**
 * `capfilt demo`: the whole pipeline on a generated noisy dataset with known ground truth.
 * Pairs come from the demo generator (src/demo), their images are rendered on request by an
 * HTTP server on 127.0.0.1 (allowlisted in the SSRF guard for this run only), and the run uses
 * the bundled demo models: BLIP (captioner + filter) and, unless `clip` is false, CLIP (the clip
 * stage, its rule at the model card's threshold, zero-shot labels of the shape kinds).
 * Afterwards the output parquet is compared with the ground truth: filter precision/recall on
 * the web texts (positive = the web text describes the image), the share of synthetic captions
 * that describe their image, and with CLIP each rule alone beside the run's decision.
 */
export const PACKAGE_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const DEMO_MODEL_DIR = join(PACKAGE_ROOT, 'models', 'demo');
export const DEMO_CLIP_DIR = join(PACKAGE_ROOT, 'models', 'demo-clip');
/**
 * The demo CLIP's cosine threshold: chosen on a validation seed (424242) that no demo run uses
 * by default, as models/demo-clip/MODEL_CARD.md records.
 */
export const DEMO_CLIP_MIN_SCORE = 0.405;

export interface DemoOptions {
  rows: number;
  seed: number;
  out: string;
  /** Image side of the rendered scenes (the demo model was trained at 160 px). */
  size: number;
  /**
   * Run the clip stage (default true), with the bundled demo CLIP unless models.clip names
   * another; false runs BLIP alone.
   */
  clip?: boolean;
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
  /** With the clip stage: CLIP's figures beside BLIP's; null without it. */
  clip: DemoClipQuality | null;
}

/** One decision rule on the web texts against the ground truth. */
export interface DemoRuleQuality {
  /** Share of the scored web texts the rule keeps. */
  kept: number | null;
  precision: number | null;
  recall: number | null;
  /** Share of each noise kind's web texts the rule rejects. */
  rejected: Record<string, number | null>;
}

export interface DemoClipQuality {
  /**
   * The web texts as each rule alone would decide them — BLIP ITM (filter.itmThreshold) and CLIP
   * (clip.minScore; null without a CLIP rule) — and the run's decision (all rules).
   */
  rules: { itm: DemoRuleQuality | null; clip: DemoRuleQuality | null; decision: DemoRuleQuality };
  itmThreshold: number | null;
  clipMinScore: number | null;
  /** Mean CLIP score of the web texts, by noise kind, and of the synthetic captions. */
  meanScore: { web: number | null; synthetic: number | null; byNoise: Record<string, number | null> };
  /** Zero-shot top labels: rows per label and the share whose top label is a shape kind of the scene. */
  labels: { counts: Record<string, number>; topInScene: number | null; oneShapeAccuracy: number | null } | null;
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

function ruleQuality(webs: { label: string; keep: boolean }[]): DemoRuleQuality {
  const ratio = (a: number, b: number) => (b ? a / b : null);
  const kept = webs.filter((w) => w.keep);
  const correct = webs.filter((w) => w.label === 'correct');
  const labels = [...new Set(webs.map((w) => w.label))].sort();
  return {
    kept: ratio(kept.length, webs.length),
    precision: ratio(kept.filter((w) => w.label === 'correct').length, kept.length),
    recall: ratio(correct.filter((w) => w.keep).length, correct.length),
    rejected: Object.fromEntries(labels.filter((l) => l !== 'correct').map((l) => {
      const of = webs.filter((w) => w.label === l);
      return [l, ratio(of.filter((w) => !w.keep).length, of.length)];
    })),
  };
}

/** CLIP's figures from the rows' CLIP scores and labels; null when no text has a CLIP score. */
export function demoClipQuality(records: RowRecord[], seed: number, rules: { itmThreshold: number | null; clipMinScore: number | null }): DemoClipQuality | null {
  const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : null);
  const webs: { label: string; itm: number | undefined; clip: number; kept: boolean }[] = [];
  const synthetic: number[] = [];
  const labelCounts: Record<string, number> = {};
  let labelled = 0;
  let inScene = 0;
  let oneShape = 0;
  let oneShapeRight = 0;
  for (const r of records) {
    if (r.status === 'failed') continue;
    for (const s of r.scores) {
      const clip = scoreOf(s, 'clip');
      if (clip === undefined) continue;
      if (s.source === 'web') webs.push({ label: String(r.extra.noise), itm: scoreOf(s, 'itm'), clip, kept: s.kept });
      else if (s.source === 'synthetic') synthetic.push(clip);
    }
    const top = r.labels?.[0]?.label;
    if (top === undefined) continue;
    labelCounts[top] = (labelCounts[top] ?? 0) + 1;
    const kinds: string[] = generateDemoPair(seed, Number(r.extra.demo_index)).scene.shapes.map((x) => x.kind);
    labelled++;
    if (kinds.includes(top)) inScene++;
    if (kinds.length === 1) {
      oneShape++;
      if (kinds[0] === top) oneShapeRight++;
    }
  }
  if (!webs.length && !synthetic.length) return null;
  const byNoise = [...new Set(webs.map((w) => w.label))].sort();
  const itm = rules.itmThreshold;
  const minScore = rules.clipMinScore;
  return {
    rules: {
      itm: itm === null || webs.some((w) => w.itm === undefined) ? null : ruleQuality(webs.map((w) => ({ label: w.label, keep: w.itm! >= itm }))),
      clip: minScore === null ? null : ruleQuality(webs.map((w) => ({ label: w.label, keep: w.clip >= minScore }))),
      decision: ruleQuality(webs.map((w) => ({ label: w.label, keep: w.kept }))),
    },
    itmThreshold: itm,
    clipMinScore: minScore,
    meanScore: {
      web: mean(webs.map((w) => w.clip)),
      synthetic: mean(synthetic),
      byNoise: Object.fromEntries(byNoise.map((l) => [l, mean(webs.filter((w) => w.label === l).map((w) => w.clip))])),
    },
    labels: labelled ? { counts: labelCounts, topInScene: inScene / labelled, oneShapeAccuracy: oneShape ? oneShapeRight / oneShape : null } : null,
  };
}

/**
 * Compares the output rows with the generator's ground truth. `rules` (the run's ITM threshold
 * and CLIP rule) adds CLIP's figures when the rows carry CLIP scores.
 */
export function demoQuality(records: RowRecord[], seed: number, rules?: { itmThreshold: number | null; clipMinScore: number | null }): DemoQuality {
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
    clip: rules ? demoClipQuality(records, seed, rules) : null,
  };
}

/** The demo's zero-shot classes: the shape kinds of the demo domain, one a line. */
export function writeDemoLabels(file: string): void {
  writeFileSync(file, `${SHAPE_KINDS.join('\n')}\n`);
}

const DEMO_SOURCE = 'capfilt demo';

/**
 * The stages (and CLIP model) the demo adds, for judging the user's layers alone: a user's CLIP
 * option (say clip.minScore) is valid only with the clip stage, which is the demo's default.
 */
export function demoStageDefaults(clip: boolean): Override[] {
  return [
    { path: 'pipeline.stages', value: STAGE_ORDER.filter((s) => s !== 'clip' || clip), source: DEMO_SOURCE },
    ...(clip ? [{ path: 'models.clip', value: DEMO_CLIP_DIR, source: DEMO_SOURCE }] : []),
  ];
}

/**
 * The user's layers (file, env, flags) on their own; when they are valid only with the demo's
 * stages, with those below the flags (then the user's file cannot pick the stages).
 */
export function loadUserLayers(sources: { file: string | null; env: Record<string, string | undefined>; overrides: Override[] }, clip: boolean): LoadedConfig {
  try {
    return loadConfig(sources);
  } catch (e) {
    if (!isCapfiltError(e, 'CONFIG_INVALID')) throw e;
    return loadConfig({ ...sources, overrides: [...demoStageDefaults(clip), ...sources.overrides] });
  }
}

export function demoConfig(o: DemoOptions, input: string, imagesUrl: string, labelsFile?: string): LoadedConfig {
  const d = (path: string, value: unknown): Override => ({ path, value, source: DEMO_SOURCE });
  // The demo's own settings sit between default.yaml and the user's layers: a user's file, env
  // or flag still wins, except the input, output and the loopback allowlist the demo needs.
  // Every stage; CLIP's unless turned off, with the bundled demo CLIP unless the user names one.
  const clip = o.clip !== false;
  const loadedUser = loadUserLayers({ file: o.configFile, env: o.env, overrides: o.overrides }, clip);
  const probe = { ...loadedUser, isExplicit: (path: string) => !['default', DEMO_SOURCE].includes(loadedUser.sourceOf(path)) };
  const demoClip = clip && !probe.isExplicit('models.clip');
  const demoDefaults: Override[] = [
    d('models.captioner', DEMO_MODEL_DIR), d('models.filter', DEMO_MODEL_DIR),
    d('image.size', o.size), d('shards.rows', Math.max(50, Math.min(250, Math.ceil(o.rows / 8)))),
    d('input.saveAdditionalColumns', ['noise', 'demo_index']), d('pipeline.stages', STAGE_ORDER.filter((s) => s !== 'clip' || clip)),
    // The demo CLIP's rule at its model card's threshold and its zero-shot labels (a user's CLIP
    // model gets neither: the threshold and the classes belong to this model and domain).
    ...(demoClip ? [d('models.clip', DEMO_CLIP_DIR), d('clip.minScore', DEMO_CLIP_MIN_SCORE)] : []),
    ...(demoClip && labelsFile ? [d('clip.labels', labelsFile)] : []),
  ].filter((x) => !probe.isExplicit(x.path));
  const allow = [...new Set([...probe.config.download.ssrfAllowlist, new URL(imagesUrl).hostname])];
  return loadConfig({
    file: o.configFile,
    env: o.env,
    overrides: [...demoDefaults, ...o.overrides, d('input.path', input), d('output.dir', o.out), d('input.format', 'jsonl'), d('download.ssrfAllowlist', allow)],
  });
}

export async function runDemo(o: DemoOptions): Promise<DemoSummary> {
  // The demo writes its input beside its output and scores the output against its ground truth.
  if (isS3Url(o.out)) throw new CapfiltError('CLI_USAGE', `the demo writes to a local folder, --out is ${o.out}; \`capfilt run --out s3://…\` writes to a bucket`, { dir: o.out });
  mkdirSync(o.out, { recursive: true });
  const images = await serveDemoImages(o.seed, o.size);
  try {
    const input = join(o.out, 'demo-input.jsonl');
    writeDemoInput(input, images.url, o.seed, o.rows);
    const labels = join(o.out, 'demo-labels.txt');
    if (o.clip !== false) writeDemoLabels(labels);
    const loaded = demoConfig(o, input, images.url, o.clip !== false ? labels : undefined);
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
    const c = loaded.config;
    const rules = c.pipeline.stages.includes('clip')
      ? { itmThreshold: c.pipeline.stages.includes('filter') ? c.filter.itmThreshold : null, clipMinScore: c.clip.minScore }
      : undefined;
    return { run, quality: demoQuality(records, o.seed, rules), input };
  } finally {
    await images.close();
  }
}
