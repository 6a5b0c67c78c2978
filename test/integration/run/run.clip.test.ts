import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { DuckDBInstance } from '@duckdb/node-api';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLIP_SIZES, writeRandomClip } from '../../../bench/random-clip.ts';
import { logger } from '../../../src/core/logger.ts';
import { scoreOf, type RowRecord } from '../../../src/core/records.ts';
import { readShardParquet } from '../../../src/io/writers/shard-parquet.ts';
import { rethreshold, shardImages } from '../../../src/run/rethreshold.ts';
import { retryFailed } from '../../../src/run/retry-failed.ts';
import { listShards, shardPaths, writeShardFiles } from '../../../src/io/writers/shard.ts';
import { float16Table } from '../../../src/io/writers/npy.ts';
import { dedup } from '../../../src/run/dedup.ts';
import { readEmbeddings } from '../../../src/io/writers/embeddings.ts';
import { runPipeline } from '../../../src/run/run.ts';
import { testConfig } from '../../helpers/config.ts';
import { fixtureConfig, startFixture, type PipelineFixture } from '../../helpers/pipeline-fixture.ts';
import { REDIS_URL, deletePrefix, uniquePrefix } from '../../helpers/redis-cleanup.ts';
import { t1ModelDir } from '../../helpers/t1-model.ts';

/** The clip stage in real runs: t1 BLIP checkpoints and a tiny random CLIP with OpenAI's vocabulary. */
const log = logger().child({ test: 'run-clip' });
let fx: PipelineFixture;
let blip: string;
let clip: string;
const prefixes: string[] = [];

beforeAll(async () => {
  fx = await startFixture(40);
  blip = t1ModelDir();
  clip = join(fx.dir, 'clip');
  writeRandomClip(clip, CLIP_SIZES.tiny);
});
afterAll(async () => {
  await fx.close();
  rmSync(blip, { recursive: true, force: true });
  for (const p of prefixes) await deletePrefix(p);
});

async function run(name: string, stages: string, extra: Record<string, unknown> = {}) {
  const prefix = uniquePrefix(name);
  prefixes.push(prefix);
  const out = join(fx.dir, `out-${name}`);
  const loaded = fixtureConfig(fx, out, {
    'redis.prefix': prefix, 'shards.rows': 20, 'pipeline.stages': stages,
    'models.captioner': blip, 'models.filter': blip, 'models.clip': clip, 'caption.maxLength': 10, 'caption.minLength': 3, ...extra,
  }, { REDIS_URL });
  const summary = await runPipeline({ loaded, workers: true, progress: 'none', log });
  const rows = await readRows(out);
  return { summary, rows, out };
}

async function readRows(out: string): Promise<RowRecord[]> {
  const files = readdirSync(out).filter((f) => f.endsWith('.parquet')).sort();
  return (await Promise.all(files.map((f) => readShardParquet(join(out, f))))).flat();
}

const clipOf = (r: RowRecord) => r.scores.map((s) => scoreOf(s, 'clip'));

describe('the clip stage', () => {
  it('CLIP only: scores the web text, keeps it iff its CLIP score passes, every row accounted for', async () => {
    const { summary, rows, out } = await run('cliponly', 'download,clip,write', { 'clip.minScore': 0.4 });
    expect(summary).toMatchObject({ status: 'done', reconciled: true, rows: 40, failed: fx.failing.size });
    const scored = rows.filter((r) => r.status !== 'failed');
    expect(scored.length).toBe(40 - fx.failing.size);
    for (const r of scored) {
      expect(r.scores.map((s) => s.source)).toEqual(['web']);
      const [c] = clipOf(r);
      expect(c).toBeGreaterThanOrEqual(-1);
      expect(c).toBeLessThanOrEqual(1);
      expect(scoreOf(r.scores[0], 'itm')).toBeUndefined();
      expect(r.status).toBe(c! >= 0.4 ? 'kept' : 'filtered');
      expect(r.scores[0].rejectedBy ?? []).toEqual(c! >= 0.4 ? [] : ['clip']);
    }
    // The random model's scores straddle the threshold, so both outcomes are exercised.
    expect(new Set(scored.map((r) => r.status))).toEqual(new Set(['kept', 'filtered']));
    const runJson = JSON.parse(readFileSync(join(out, 'run.json'), 'utf8'));
    expect(JSON.stringify(runJson.models ?? runJson)).toContain('CLIPModel');

    // rethreshold learns the CLIP rule: from the stored scores, without a model.
    const to = join(fx.dir, 'out-cliponly-rethreshold');
    const s = await rethreshold(out, to, { itmThreshold: 0.5, itcThreshold: null, selection: 'original-first', keepTop: null, clipMinScore: -1 });
    expect(s.kept).toBe(40 - fx.failing.size);
    expect((await readRows(to)).filter((r) => r.status === 'kept').every((r) => clipOf(r)[0] !== undefined)).toBe(true);
  });

  it('BLIP and CLIP together: both rules must pass, the parquet names the rule that dropped each text', async () => {
    const { summary, rows, out } = await run('both', 'download,caption,filter,clip,write', { 'filter.itmThreshold': 0.5, 'clip.minScore': 0.4, 'caption.k': 2 });
    expect(summary).toMatchObject({ status: 'done', reconciled: true, rows: 40 });
    for (const r of rows.filter((x) => x.status !== 'failed')) {
      expect(r.scores.map((s) => s.source)).toEqual(['web', 'synthetic', 'synthetic']);
      for (const t of r.scores) {
        const itm = scoreOf(t, 'itm')!;
        const c = scoreOf(t, 'clip')!;
        const want = [...(itm >= 0.5 ? [] : ['itm']), ...(c >= 0.4 ? [] : ['clip'])];
        expect(t.rejectedBy ?? []).toEqual(want);
        expect(t.kept).toBe(want.length === 0);
      }
      expect(r.status).toBe(r.scores.some((t) => t.kept) ? 'kept' : 'filtered');
    }
    // run.json: the texts each rule rejected, summed over the run; no labels or embeddings asked for.
    const rejected: Record<string, number> = {};
    for (const t of rows.flatMap((r) => r.scores)) for (const rule of t.rejectedBy ?? []) rejected[rule] = (rejected[rule] ?? 0) + 1;
    expect(summary.rejectedBy).toEqual(rejected);
    const runJson = JSON.parse(readFileSync(join(out, 'run.json'), 'utf8'));
    expect(runJson.rejectedBy).toEqual(rejected);
    expect(runJson).not.toHaveProperty('labelCounts');
    expect(runJson).not.toHaveProperty('embeddingsWritten');
  });

  it('ranks synthetic captions by CLIP for keep-top (BLIP-2: --k 3 --keep-top 1 --select-by clip)', async () => {
    const { rows } = await run('selectby', 'download,caption,filter,clip,write', { 'filter.itmThreshold': 0, 'caption.k': 3, 'caption.keepTop': 1, 'caption.selectBy': 'clip', 'caption.method': 'nucleus' });
    for (const r of rows.filter((x) => x.status === 'kept')) {
      const syn = r.scores.filter((s) => s.source === 'synthetic');
      const kept = syn.filter((s) => s.kept);
      expect(kept).toHaveLength(1);
      expect(scoreOf(kept[0], 'clip')).toBe(Math.max(...syn.map((s) => scoreOf(s, 'clip')!)));
    }
  });

  it('writes the kept rows\' embeddings in clip-retrieval\'s layout, read back by NumPy and DuckDB in metadata order', async () => {
    const { rows, out } = await run('embeddings', 'download,clip,write', { 'clip.minScore': 0.4, 'clip.saveEmbeddings': true });
    const kept = new Map(rows.filter((r) => r.status === 'kept').map((r) => [r.key, r]));
    expect(kept.size).toBeGreaterThan(0);
    const shards = readdirSync(join(out, 'embeddings', 'img_emb')).sort();
    const db = await (await DuckDBInstance.create(':memory:')).connect();
    expect(shards.length).toBeGreaterThan(0);
    let seen = 0;
    for (const f of shards) {
      const name = f.replace(/^img_emb_|\.npy$/g, '');
      // DuckDB (not the parquet library capfilt writes and reads with), in file order.
      const metaFile = join(out, 'embeddings', 'metadata', `metadata_${name}.parquet`);
      const meta = (await db.runAndReadAll(`SELECT key, url, caption, selected FROM read_parquet('${metaFile.replace(/'/g, "''")}') ORDER BY file_row_number`)).getRowObjectsJson() as { key: string; url: string; caption: string | null }[];
      // Debian's NumPy (not our reader): shapes, dtype, and the cosine of each image/text pair.
      const py = execFileSync('/usr/bin/python3', ['-c', `
import sys, json, numpy as np
i = np.load(sys.argv[1]); t = np.load(sys.argv[2])
print(json.dumps({"dtype": str(i.dtype), "shape": list(i.shape), "tshape": list(t.shape), "cos": (i.astype(np.float32) * t.astype(np.float32)).sum(1).tolist(), "norm": np.linalg.norm(i.astype(np.float32), axis=1).tolist()}))
`, join(out, 'embeddings', 'img_emb', f), join(out, 'embeddings', 'text_emb', `text_emb_${name}.npy`)], { encoding: 'utf8' });
      const got = JSON.parse(py) as { dtype: string; shape: number[]; tshape: number[]; cos: number[]; norm: number[] };
      expect(got.dtype).toBe('float16');
      expect(got.shape).toEqual([meta.length, 16]);
      expect(got.tshape).toEqual(got.shape);
      meta.forEach((m, i) => {
        const r = kept.get(m.key)!;
        expect(r).toBeDefined();
        expect(m.url).toBe(r.url);
        expect(m.caption).toBe(r.text);
        expect(got.norm[i]).toBeCloseTo(1, 2);
        expect(got.cos[i]).toBeCloseTo(scoreOf(r.scores[0], 'clip')!, 2);
      });
      seen += meta.length;
    }
    db.closeSync();
    expect(seen).toBe(kept.size);
    expect(JSON.parse(readFileSync(join(out, 'run.json'), 'utf8')).embeddingsWritten).toBe(kept.size);
  });

  it('rethreshold carries the embeddings of the rows it keeps, counts kept rows that have none, and dedup reads the result', async () => {
    const { rows, out } = await run('embeddings-re', 'download,clip,write', { 'clip.minScore': 0.4, 'clip.saveEmbeddings': true });
    const keptBefore = rows.filter((r) => r.status === 'kept');
    const before = new Map<string, Uint16Array>();
    for (const f of readdirSync(join(out, 'embeddings', 'img_emb'))) {
      const e = (await readEmbeddings(out, f.replace(/^img_emb_|\.npy$/g, '')))!;
      e.keys.forEach((k, i) => before.set(k, (e.image.data as Uint16Array).slice(i * e.image.dim, (i + 1) * e.image.dim)));
    }
    expect(before.size).toBe(keptBefore.length);
    const scores = keptBefore.map((r) => clipOf(r)[0]!).sort((a, b) => a - b);
    const stricter = scores[Math.floor(scores.length / 2)];
    const cases = [
      { to: join(fx.dir, 'out-embeddings-strict'), min: stricter },
      { to: join(fx.dir, 'out-embeddings-loose'), min: -1 },
    ];
    for (const c of cases) {
      const s = await rethreshold(out, c.to, { itmThreshold: 0.5, itcThreshold: null, selection: 'original-first', keepTop: null, clipMinScore: c.min });
      const keptNow = (await readRows(c.to)).filter((r) => r.status === 'kept');
      const carried = keptNow.filter((r) => before.has(r.key));
      expect(s.embeddings).toEqual({ carried: carried.length, keptWithout: keptNow.length - carried.length });
      const after = new Map<string, Uint16Array>();
      for (const f of readdirSync(join(c.to, 'embeddings', 'img_emb'))) {
        const e = (await readEmbeddings(c.to, f.replace(/^img_emb_|\.npy$/g, '')))!;
        e.keys.forEach((k, i) => after.set(k, (e.image.data as Uint16Array).slice(i * e.image.dim, (i + 1) * e.image.dim)));
      }
      // Exactly the rows kept now that had embeddings, bit for bit.
      expect([...after.keys()].sort()).toEqual(carried.map((r) => r.key).sort());
      for (const [k, bits] of after) expect(bits).toEqual(before.get(k));
      expect(JSON.parse(readFileSync(join(c.to, 'run.json'), 'utf8')).embeddingsWritten).toBe(carried.length);
    }
    const loose = await dedup(cases[1].to, join(fx.dir, 'out-embeddings-dedup'), { threshold: 0.95, threads: 1 });
    const keptLoose = (await readRows(cases[1].to)).filter((r) => r.status === 'kept').length;
    expect(keptLoose).toBeGreaterThan(before.size);
    expect(loose).toMatchObject({ embedded: before.size, keptWithoutEmbedding: keptLoose - before.size });
    expect(loose.rows).toBe(rows.length);
  });

  it('retry-failed keeps the saved embeddings of untouched rows and adds those of the rows it recovers', async () => {
    const { out } = await run('embeddings-retry', 'download,clip,write', { 'clip.minScore': -1, 'clip.saveEmbeddings': true });
    const bits = async (dir: string, name: string) => {
      const e = (await readEmbeddings(dir, name))!;
      return new Map(e.keys.map((k, i) => [k, (e.image.data as Uint16Array).slice(i * e.image.dim, (i + 1) * e.image.dim)]));
    };
    const [first] = await listShards(out);
    const before = await bits(out, first);
    // Two kept rows of the first shard fail as if their download had timed out; the shard is
    // rewritten without them, its triple cut to the rows still kept.
    const records = await readShardParquet(shardPaths(out, first).parquet);
    const images = await shardImages(out, first);
    const victims = records.filter((r) => r.status === 'kept').slice(0, 2);
    expect(victims.length).toBe(2);
    const saved = await readEmbeddings(out, first, { text: true });
    for (const r of victims) Object.assign(r, { status: 'failed', reason: 'DOWNLOAD_TIMEOUT', reasonDetail: 'test', image: null, scores: [], selected: null });
    await writeShardFiles(records, { outDir: out, name: first, images, startTime: Date.now(), carriedEmbeddings: saved });
    expect([...(await bits(out, first)).keys()].sort()).toEqual([...before.keys()].filter((k) => !victims.some((v) => v.key === k)).sort());

    // run.json as a run whose victims had failed would have written it.
    const runJson = JSON.parse(readFileSync(join(out, 'run.json'), 'utf8'));
    const totals = { kept: runJson.kept, failed: runJson.failed, embeddingsWritten: runJson.embeddingsWritten };
    writeFileSync(join(out, 'run.json'), JSON.stringify({ ...runJson, kept: totals.kept - 2, failed: totals.failed + 2, embeddingsWritten: totals.embeddingsWritten - 2 }));

    // The fixture's failing URLs are retried too and still fail; the two victims come back.
    expect((await retryFailed({ out, log })).recovered).toBe(2);
    expect(JSON.parse(readFileSync(join(out, 'run.json'), 'utf8'))).toMatchObject(totals);
    const after = await bits(out, first);
    const kept = (await readShardParquet(shardPaths(out, first).parquet)).filter((r) => r.status === 'kept');
    expect([...after.keys()].sort()).toEqual(kept.map((r) => r.key).sort());
    expect([...after.keys()].sort()).toEqual([...before.keys()].sort());
    const half = float16Table();
    for (const [k, b] of after) {
      if (victims.some((v) => v.key === k)) {
        // Recomputed from the same image by the same model.
        const old = before.get(k)!;
        b.forEach((x, j) => expect(half[x]).toBeCloseTo(half[old[j]], 2));
      } else expect(b).toEqual(before.get(k));
    }
  });

  it('labels every scored image zero-shot, with either template set; counts the top labels in _stats.json', async () => {
    writeFileSync(join(fx.dir, 'classes.txt'), 'red square\ngreen square\nblue circle\n');
    for (const templates of ['simple', 'imagenet']) {
      const { rows, out } = await run(`labels-${templates}`, 'download,clip,write', { 'clip.labels': join(fx.dir, 'classes.txt'), 'clip.templates': templates, 'clip.labelsTopK': 2 });
      const scored = rows.filter((r) => r.status !== 'failed');
      expect(scored.length).toBe(40 - fx.failing.size);
      for (const r of scored) {
        expect(r.labels).toHaveLength(2);
        expect(r.labels![0].prob).toBeGreaterThanOrEqual(r.labels![1].prob);
        expect(['red square', 'green square', 'blue circle']).toContain(r.labels![0].label);
      }
      const counts: Record<string, number> = {};
      for (const f of readdirSync(out).filter((x) => x.endsWith('_stats.json'))) {
        for (const [k, v] of Object.entries(JSON.parse(readFileSync(join(out, f), 'utf8')).labels ?? {})) counts[k] = (counts[k] ?? 0) + (v as number);
      }
      expect(Object.values(counts).reduce((a, b) => a + b, 0)).toBe(scored.length);
      // run.json sums the shards' label counts.
      expect(JSON.parse(readFileSync(join(out, 'run.json'), 'utf8')).labelCounts).toEqual(counts);
    }
  });

  it('refuses a clip stage without a CLIP model as a config error', () => {
    expect(() => testConfig({ 'pipeline.stages': 'download,clip,write' })).toThrow(/models\.clip/);
  });
});
