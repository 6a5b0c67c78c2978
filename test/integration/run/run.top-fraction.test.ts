import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { asyncBufferFromFile, parquetReadObjects } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { logger } from '../../../src/core/logger.ts';
import { DEMO_MODEL_DIR, PACKAGE_ROOT, serveDemoImages, writeDemoInput } from '../../../src/run/demo.ts';
import { finishTopFraction, rethreshold, shardImages } from '../../../src/run/rethreshold.ts';
import { retryFailed } from '../../../src/run/retry-failed.ts';
import { listShards, shardPaths, writeShardFiles } from '../../../src/io/writers/shard.ts';
import { readShardParquet } from '../../../src/io/writers/shard-parquet.ts';
import { runPipeline } from '../../../src/run/run.ts';
import { cli } from '../../helpers/cli.ts';
import { testConfig } from '../../helpers/config.ts';
import { REDIS_URL, deletePrefix, uniquePrefix } from '../../helpers/redis-cleanup.ts';

/**
 * DataComp's top-fraction rule (clip.topFraction) in real runs: the demo CLIP (models/demo-clip)
 * and the demo BLIP on the demo domain's noisy pairs, images served over HTTP on 127.0.0.1. Every
 * check of the final kept set reads the shards back with hyparquet directly (not our reader) and
 * computes the exact quantile here.
 */
const log = logger().child({ test: 'run-top-fraction' });
const CLIP_DIR = join(PACKAGE_ROOT, 'models', 'demo-clip');
const ROWS = 120;
const SEED = 4242;
let dir: string;
let input: string;
let images: Awaited<ReturnType<typeof serveDemoImages>>;
const prefixes: string[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'capfilt-topfrac-'));
  images = await serveDemoImages(SEED, 96);
  input = join(dir, 'input.jsonl');
  writeDemoInput(input, images.url, SEED, ROWS);
});
afterAll(async () => {
  await images?.close();
  rmSync(dir, { recursive: true, force: true });
  for (const p of prefixes) await deletePrefix(p);
});

async function run(name: string, stages: string, extra: Record<string, unknown>) {
  const prefix = uniquePrefix(name);
  prefixes.push(prefix);
  const out = join(dir, `out-${name}`);
  const loaded = testConfig({
    'redis.prefix': prefix, 'input.path': input, 'input.format': 'jsonl', 'output.dir': out, 'shards.rows': 15,
    'pipeline.stages': stages, 'download.ssrfAllowlist': '127.0.0.1', 'download.retries': 0, 'image.size': 96,
    'models.captioner': DEMO_MODEL_DIR, 'models.filter': DEMO_MODEL_DIR, 'models.clip': CLIP_DIR, ...extra,
  }, { REDIS_URL });
  const summary = await runPipeline({ loaded, workers: true, progress: 'none', log });
  return { summary, out };
}

interface Row {
  key: string;
  status: string;
  trusted: boolean;
  reason: string;
  score_source: string[];
  score_clip: (number | null)[];
  score_itm: (number | null)[];
  score_kept: boolean[];
  score_rejected_by: string[];
  clip_top_threshold: number | null;
  clip_top_provisional: boolean | null;
}

/** Every row of an output folder, read with hyparquet itself. */
async function readOut(out: string): Promise<Row[]> {
  const rows: Row[] = [];
  for (const f of readdirSync(out).filter((n) => /^\d+\.parquet$/.test(n)).sort()) {
    const file = await asyncBufferFromFile(join(out, f));
    rows.push(...((await parquetReadObjects({ file, compressors })) as unknown as Row[]));
  }
  return rows;
}

/** The exact threshold, computed here: the ⌈f·N⌉-th highest CLIP score of every text of the non-failed, non-trusted rows. */
function exactThreshold(rows: Row[], fraction: number): { t: number; n: number } {
  const scores = rows.filter((r) => r.status !== 'failed' && !r.trusted).flatMap((r) => r.score_clip.filter((v): v is number => v !== null));
  scores.sort((a, b) => b - a);
  const k = Math.max(1, Math.ceil(fraction * scores.length - 1e-9));
  return { t: scores[k - 1], n: scores.length };
}

/** Keys in a tar, by GNU tar (not our reader). */
function tarKeys(path: string): Set<string> {
  const names = execFileSync('tar', ['-tf', path], { encoding: 'utf8' }).split('\n').filter(Boolean);
  return new Set(names.map((n) => n.replace(/\.[^.]+$/, '')));
}

/** The output's tars agree with the parquet: kept rows in NNNNN.tar, filtered rows with an image in filtered/NNNNN.tar. */
function expectTarsMatch(out: string, rows: Row[]): void {
  const kept = new Set<string>();
  const filtered = new Set<string>();
  for (const f of readdirSync(out).filter((n) => /^\d+\.tar$/.test(n))) for (const k of tarKeys(join(out, f))) kept.add(k);
  const fdir = join(out, 'filtered');
  for (const f of readdirSync(fdir).filter((n) => n.endsWith('.tar'))) for (const k of tarKeys(join(fdir, f))) filtered.add(k);
  expect([...kept].sort()).toEqual(rows.filter((r) => r.status === 'kept').map((r) => r.key).sort());
  expect([...filtered].sort()).toEqual(rows.filter((r) => r.status === 'filtered').map((r) => r.key).sort());
}

describe('clip.topFraction', () => {
  it('CLIP only, top 30%: the final kept set is exactly the top fraction of the parquet scores; run.json and _stats.json record the pass', async () => {
    const { summary, out } = await run('clip', 'download,clip,write', { 'clip.topFraction': 0.3 });
    expect(summary).toMatchObject({ status: 'done', reconciled: true, rows: ROWS });
    const rows = await readOut(out);
    const { t, n } = exactThreshold(rows, 0.3);
    expect(n).toBe(rows.filter((r) => r.status !== 'failed').reduce((k, r) => k + r.score_clip.length, 0));
    // The demo's junk rows with an empty web text have nothing to rank: filtered, unmarked.
    const empty = rows.filter((r) => r.status !== 'failed' && r.score_clip.length === 0);
    expect(empty.length).toBeGreaterThan(0);
    for (const r of empty) expect(r).toMatchObject({ status: 'filtered', reason: 'FILTER_NO_TEXT_KEPT', clip_top_threshold: null });
    let keptTexts = 0;
    for (const r of rows.filter((x) => x.status !== 'failed' && x.score_clip.length > 0)) {
      expect(r.clip_top_threshold).toBe(t);
      expect(r.clip_top_provisional).toBe(false);
      r.score_clip.forEach((c, i) => {
        const pass = c! >= t;
        expect(r.score_kept[i]).toBe(pass);
        expect(r.score_rejected_by[i]).toBe(pass ? '' : 'top_fraction');
        if (pass) keptTexts++;
      });
      expect(r.status).toBe(r.score_kept.some(Boolean) ? 'kept' : 'filtered');
    }
    // Ties aside, the kept share is the fraction: ⌈0.3·N⌉ texts.
    expect(keptTexts).toBe(Math.ceil(0.3 * n - 1e-9));
    expectTarsMatch(out, rows);

    const runJson = JSON.parse(readFileSync(join(out, 'run.json'), 'utf8'));
    const top = runJson.clipTopFraction;
    expect(top).toMatchObject({ fraction: 0.3, threshold: t, texts: n, textsAtOrAbove: keptTexts });
    expect(runJson.kept).toBe(rows.filter((r) => r.status === 'kept').length);
    // Shards were decided provisionally from the shared histogram while the run streamed.
    expect(top.provisional).not.toBeNull();
    expect(Math.abs(top.sketchThreshold - t)).toBeLessThan(0.001 + 1e-12);
    let moved = 0;
    for (const f of readdirSync(out).filter((x) => x.endsWith('_stats.json'))) {
      const s = JSON.parse(readFileSync(join(out, f), 'utf8'));
      expect(s.top_fraction).toMatchObject({ threshold: t, provisional: false, fraction: 0.3 });
      moved += s.top_fraction.rows_moved;
    }
    expect(moved).toBe(top.rowsMoved.toKept + top.rowsMoved.toFiltered);
  }, 180_000);

  it('combines with BLIP ITM and clip.minScore: every rule must pass; the rank is over every scored text', async () => {
    const { summary, out } = await run('combo', 'download,filter,clip,write', { 'clip.topFraction': 0.5, 'clip.minScore': 0.2, 'filter.itmThreshold': 0.5 });
    expect(summary).toMatchObject({ status: 'done', reconciled: true });
    const rows = await readOut(out);
    const { t } = exactThreshold(rows, 0.5);
    const seen = new Set<string>();
    for (const r of rows.filter((x) => x.status !== 'failed')) {
      r.score_clip.forEach((c, i) => {
        const want = [...(r.score_itm[i]! >= 0.5 ? [] : ['itm']), ...(c! >= 0.2 ? [] : ['clip']), ...(c! >= t ? [] : ['top_fraction'])];
        expect(r.score_rejected_by[i]).toBe(want.join(','));
        expect(r.score_kept[i]).toBe(want.length === 0);
        for (const w of want) seen.add(w);
      });
      expect(r.status).toBe(r.score_kept.some(Boolean) ? 'kept' : 'filtered');
    }
    // The demo noise makes each rule drop some text.
    expect(seen).toEqual(new Set(['itm', 'clip', 'top_fraction']));
    expectTarsMatch(out, rows);
  }, 180_000);

  it('rethreshold --clip-top-fraction recomputes the exact threshold; the in-place pass moves rows between out/ and out/filtered/', async () => {
    const { out } = await run('re', 'download,clip,write', { 'clip.topFraction': 0.3 });
    const before = await readOut(out);
    const base = { itmThreshold: 0.5, itcThreshold: null, selection: 'original-first' as const, keepTop: null };

    const to = join(dir, 'out-re-60');
    const s = await rethreshold(out, to, { ...base, clipTopFraction: 0.6 });
    const after = await readOut(to);
    const { t, n } = exactThreshold(before, 0.6);
    expect(s.topFraction).toMatchObject({ fraction: 0.6, threshold: t, texts: n });
    expect(s.topFraction!.rowsMoved.toKept).toBeGreaterThan(0);
    for (const r of after.filter((x) => x.status !== 'failed' && x.score_clip.length > 0)) {
      expect(r.clip_top_threshold).toBe(t);
      r.score_clip.forEach((c, i) => expect(r.score_kept[i]).toBe(c! >= t));
    }
    expectTarsMatch(to, after);
    expect(JSON.parse(readFileSync(join(to, 'run.json'), 'utf8')).clipTopFraction).toMatchObject({ fraction: 0.6, threshold: t });

    // The CLI takes the run's fraction from run.json unless told another.
    const byCli = cli(['rethreshold', out, '--to', join(dir, 'out-re-cli'), '--clip-top-fraction', '0.6', '--json']);
    expect((await byCli.exited).code).toBe(0);
    expect(JSON.parse(byCli.stdout().trim().split('\n').pop()!).topFraction).toMatchObject({ fraction: 0.6, threshold: t });
    const asRun = cli(['rethreshold', out, '--to', join(dir, 'out-re-cli-default'), '--json']);
    expect((await asRun.exited).code).toBe(0);
    expect(JSON.parse(asRun.stdout().trim().split('\n').pop()!).topFraction).toMatchObject({ fraction: 0.3, threshold: exactThreshold(before, 0.3).t });

    // Without the rule: the mark is gone, every scored text passes.
    const none = join(dir, 'out-re-none');
    await rethreshold(out, none, { ...base, clipTopFraction: null });
    for (const r of (await readOut(none)).filter((x) => x.status !== 'failed' && x.score_clip.length > 0)) {
      expect(r.clip_top_threshold).toBeNull();
      expect(r.status).toBe('kept');
    }

    // The run's final pass, in place, on a copy: a stricter fraction moves rows into filtered/.
    const copy = join(dir, 'out-re-copy');
    cpSync(out, copy, { recursive: true });
    // Each shard's first kept row failed after its download (its parquet row still names the image, no tar holds it).
    for (const name of await listShards(copy)) {
      const records = await readShardParquet(shardPaths(copy, name).parquet);
      const images = await shardImages(copy, name);
      const victim = records.find((r) => r.status === 'kept');
      if (victim) Object.assign(victim, { status: 'failed', reason: 'IMAGE_DECODE_FAILED', reasonDetail: 'test', scores: [], selected: null, clipTop: undefined });
      await writeShardFiles(records, { outDir: copy, name, images, startTime: Date.now() });
    }
    const beforeCopy = await readOut(copy);
    const pass = await finishTopFraction(copy, { ...base, clipTopFraction: 0.1 });
    const strict = await readOut(copy);
    const exact10 = exactThreshold(beforeCopy, 0.1);
    expect(pass.topFraction.threshold).toBe(exact10.t);
    expect(pass.topFraction.rowsMoved.toFiltered).toBe(beforeCopy.filter((r) => r.status === 'kept').length - strict.filter((r) => r.status === 'kept').length);
    expect(pass.topFraction.rowsMoved.toFiltered).toBeGreaterThan(0);
    for (const r of strict.filter((x) => x.status !== 'failed')) r.score_clip.forEach((c, i) => expect(r.score_kept[i]).toBe(c! >= exact10.t));
    expectTarsMatch(copy, strict);
    expect(strict.map((r) => [r.key, r.status === 'failed']).sort()).toEqual(beforeCopy.map((r) => [r.key, r.status === 'failed']).sort());
  }, 180_000);

  it('retry-failed: recovered rows join the ranking and the final pass runs again', async () => {
    const { out } = await run('retry', 'download,clip,write', { 'clip.topFraction': 0.3 });
    // Three scored rows of the first shard fail as if their download had timed out.
    const [first] = await listShards(out);
    const records = await readShardParquet(shardPaths(out, first).parquet);
    const images = await shardImages(out, first);
    const victims = records.filter((r) => r.status !== 'failed' && r.scores.length > 0).slice(0, 3);
    for (const r of victims) Object.assign(r, { status: 'failed', reason: 'DOWNLOAD_TIMEOUT', reasonDetail: 'test', image: null, scores: [], selected: null, clipTop: undefined });
    await writeShardFiles(records, { outDir: out, name: first, images, startTime: Date.now() });
    const summary = await retryFailed({ out, log });
    expect(summary).toMatchObject({ retried: 3, recovered: 3 });
    const rows = await readOut(out);
    const { t, n } = exactThreshold(rows, 0.3);
    expect(summary.topFraction).toMatchObject({ threshold: t, texts: n });
    for (const r of rows.filter((x) => x.status !== 'failed' && x.score_clip.length > 0)) {
      expect(r).toMatchObject({ clip_top_threshold: t, clip_top_provisional: false });
      r.score_clip.forEach((c, i) => expect(r.score_kept[i]).toBe(c! >= t));
    }
    expectTarsMatch(out, rows);
    // run.json's totals are the final pass's, over every row.
    const count = (st: string) => rows.filter((r) => r.status === st).length;
    expect(JSON.parse(readFileSync(join(out, 'run.json'), 'utf8'))).toMatchObject({ kept: count('kept'), filtered: count('filtered'), failed: count('failed'), clipTopFraction: { threshold: t } });
  }, 180_000);
});
