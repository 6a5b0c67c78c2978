import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLIP_SIZES, writeRandomClip } from '../../../bench/random-clip.ts';
import { logger } from '../../../src/core/logger.ts';
import type { RowRecord } from '../../../src/core/records.ts';
import { readEmbeddings } from '../../../src/io/writers/embeddings.ts';
import { readShardParquet } from '../../../src/io/writers/shard-parquet.ts';
import { dedup } from '../../../src/run/dedup.ts';
import { runPipeline } from '../../../src/run/run.ts';
import { fixtureConfig, startFixture, type PipelineFixture } from '../../helpers/pipeline-fixture.ts';
import { REDIS_URL, deletePrefix, uniquePrefix } from '../../helpers/redis-cleanup.ts';

/**
 * dedup on the output of a real run: download, a tiny random CLIP with --save-embeddings, write.
 * The fixture server serves 8 distinct JPEGs under 40 URLs, so rows share images byte for byte
 * (marked duplicate_of by the download stage, kept): identical images have identical
 * embeddings, so dedup keeps exactly one row of each, whatever the random model makes of them.
 */
const log = logger().child({ test: 'dedup' });
let fx: PipelineFixture;
let clip: string;
const prefix = uniquePrefix('dedup');

beforeAll(async () => {
  fx = await startFixture(40);
  clip = join(fx.dir, 'clip');
  writeRandomClip(clip, CLIP_SIZES.tiny);
  const loaded = fixtureConfig(fx, join(fx.dir, 'out'), {
    'redis.prefix': prefix, 'shards.rows': 15, 'pipeline.stages': 'download,clip,write',
    'models.clip': clip, 'clip.minScore': -1, 'clip.saveEmbeddings': true,
  }, { REDIS_URL });
  const summary = await runPipeline({ loaded, workers: true, progress: 'none', log });
  expect(summary).toMatchObject({ status: 'done', rows: 40, failed: fx.failing.size });
});
afterAll(async () => {
  await fx.close();
  await deletePrefix(prefix);
});

async function rowsOf(out: string): Promise<RowRecord[]> {
  const files = readdirSync(out).filter((f) => f.endsWith('.parquet')).sort();
  return (await Promise.all(files.map((f) => readShardParquet(join(out, f))))).flat();
}

describe('dedup of a run with --save-embeddings', () => {
  it('keeps one row per identical image, every row accounted for, progress reported by phase', async () => {
    const out = join(fx.dir, 'out');
    const to = join(fx.dir, 'dedup');
    const phases = new Map<string, { done: number; total: number }>();
    const summary = await dedup(out, to, { threshold: 0.95, clusters: 2, threads: 1, progress: (p, done, total) => phases.set(p, { done, total }) });
    const before = await rowsOf(out);
    const after = await rowsOf(to);
    expect(after.map((r) => r.key)).toEqual(before.map((r) => r.key));
    const kept = before.filter((r) => r.status === 'kept');
    expect(kept.length).toBe(40 - fx.failing.size);
    expect(summary).toMatchObject({ shards: 3, rows: 40, embedded: kept.length, failed: fx.failing.size, kept: kept.length - summary.nearDuplicates });

    const byKey = new Map(after.map((r) => [r.key, r]));
    const bySha = new Map<string, RowRecord[]>();
    for (const r of after.filter((x) => x.image && x.status !== 'failed')) bySha.set(r.image!.sha256, [...(bySha.get(r.image!.sha256) ?? []), r]);
    expect(bySha.size).toBeGreaterThan(1);
    for (const group of bySha.values()) expect(group.filter((r) => r.status === 'kept').length).toBeLessThanOrEqual(1);
    for (const r of after) {
      const old = before.find((b) => b.key === r.key)!;
      if (r.reason === 'NEAR_DUPLICATE') {
        expect(old.status).toBe('kept');
        expect(byKey.get(r.nearDuplicate!.of)!.status).toBe('kept');
        expect(r.nearDuplicate!.cosine).toBeGreaterThanOrEqual(0.95);
      } else expect([r.status, r.reason]).toEqual([old.status, old.reason]);
    }
    // Each distinct image is kept at least once: its row is nobody's near-duplicate, or a kept
    // row of another image stands for it.
    expect(summary.nearDuplicates).toBeGreaterThanOrEqual(kept.length - bySha.size);

    const embedded = (await Promise.all(['00000', '00001', '00002'].map((n) => readEmbeddings(to, n)))).flatMap((e) => e?.keys ?? []);
    expect(embedded.sort()).toEqual(after.filter((r) => r.status === 'kept').map((r) => r.key).sort());
    const stats = ['00000', '00001', '00002'].map((n) => JSON.parse(readFileSync(join(to, `${n}_stats.json`), 'utf8')));
    expect(stats.reduce((s, x) => s + (x.reasons.NEAR_DUPLICATE ?? 0), 0)).toBe(summary.nearDuplicates);
    expect([...phases.keys()]).toEqual(['k-means', 'assign', 'pairwise', 'write']);
    expect(phases.get('assign')).toEqual({ done: kept.length, total: kept.length });
    expect(phases.get('write')).toEqual({ done: 40, total: 40 });
    rmSync(to, { recursive: true, force: true });
  });
});
