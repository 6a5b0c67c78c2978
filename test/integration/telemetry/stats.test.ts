import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { StatsReader, StatsWriter, keptAtThreshold, THUMBNAIL_MAX_BYTES } from '../../../src/telemetry/stats.ts';
import { scoreOf } from '../../../src/core/records.ts';
import { createMetrics } from '../../../src/telemetry/metrics.ts';
import { DemoStatsProducer, demoRecord } from '../../helpers/dashboard-fixtures.ts';
import { ManualClock } from '../../helpers/manual-clock.ts';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
let redis: Redis;
const prefixes: string[] = [];

function fresh(): string {
  const p = `test-stats-${randomUUID().slice(0, 8)}`;
  prefixes.push(p);
  return p;
}

async function keyCount(prefix: string): Promise<number> {
  return (await redis.keys(`${prefix}:*`)).length;
}

beforeAll(() => {
  redis = new Redis(REDIS_URL);
});

afterAll(async () => {
  for (const p of prefixes) {
    const found = await redis.keys(`${p}:*`);
    if (found.length) await redis.del(...found);
  }
  await redis.quit();
});

describe('StatsWriter + StatsReader on real Redis', () => {
  it('counts every row once per stage and reconciles final statuses, texts and histograms', async () => {
    const prefix = fresh();
    const metrics = createMetrics({ defaultMetrics: false });
    const writer = new StatsWriter({ redis, prefix, metrics });
    const reader = new StatsReader(redis, prefix);
    const producer = new DemoStatsProducer({ writer, runId: 'r1', shards: 3, shardRows: 40 });
    await producer.register();
    const all = [];
    for (let i = 0; i < 3; i++) all.push(...(await producer.shard(i)));

    const snap = await reader.run('r1');
    expect(snap).not.toBeNull();
    const c = snap!.counters;
    expect(c.done).toBe(120);
    expect(c.shardsDone).toBe(3);
    expect(c.final.kept + c.final.filtered + c.final.failed).toBe(120);
    expect(c.final.kept).toBe(all.filter((r) => r.status === 'kept').length);
    expect(c.final.failed).toBe(all.filter((r) => r.status === 'failed').length);
    expect(Object.values(c.failedReasons).reduce((a, b) => a + b, 0)).toBe(c.final.failed);
    expect(c.filteredReasons.FILTER_NO_TEXT_KEPT ?? 0).toBe(c.final.filtered);
    for (const stage of ['download', 'caption', 'filter', 'write']) {
      expect(c.stages[stage].rows).toBe(120);
      expect(c.stages[stage].shards).toBe(3);
    }
    expect(c.stages.download.statuses.failed).toBe(c.final.failed);

    const webScores = all.flatMap((r) => r.scores.filter((s) => s.source === 'web'));
    expect(c.texts.web.total).toBe(webScores.length);
    expect(c.texts.web.kept).toBe(webScores.filter((s) => s.kept).length);
    expect(c.imagesAnyKept).toBe(c.final.kept);
    expect(c.imagesScored).toBe(120 - c.final.failed);

    const itmWeb = snap!.histograms.itm.counts.web;
    expect(itmWeb.reduce((a, b) => a + b, 0)).toBe(webScores.length);
    // The threshold 0.5 is a bucket edge: kept % from the histogram equals the real decision.
    expect(keptAtThreshold(snap!.histograms.itm.spec, itmWeb, 0.5).kept).toBe(c.texts.web.kept);
    const at07 = webScores.filter((s) => s.itm >= 0.7).length;
    expect(keptAtThreshold(snap!.histograms.itm.spec, itmWeb, 0.7).kept).toBe(at07);
    expect(snap!.histograms.itc.counts.synthetic.reduce((a, b) => a + b, 0)).toBe(c.texts.synthetic.total);

    // A run without the clip stage: no CLIP histogram, rules, labels or embeddings.
    expect(snap!.clipHistogram).toBeNull();
    expect([c.rejectedBy, c.labels, c.embeddingsWritten]).toEqual([{}, {}, 0]);
    expect(snap!.meta.clipMinScore).toBeNull();

    expect(snap!.series.write.reduce((a, [, r]) => a + r * snap!.meta.bucketSec, 0)).toBe(120);
    expect(snap!.rowsPerSec).toBeGreaterThan(0);
    expect(snap!.etaSec).toBe(0);

    const text = await metrics.registry.metrics();
    expect(text).toContain(`capfilt_rows_total{stage="write",status="kept"} ${c.final.kept}`);
    expect(text).toMatch(/capfilt_kept_ratio\{source="web"\} 0\.\d+/);
  });

  it('counts the clip stage\'s figures: CLIP scores by decision, texts per rejecting rule, top labels, embeddings written; samples carry them', async () => {
    const prefix = fresh();
    const writer = new StatsWriter({ redis, prefix, samplesPerShard: 40, maxSamples: 40 });
    const reader = new StatsReader(redis, prefix);
    await writer.registerRun({ runId: 'rc', input: 'x.csv', totalRows: 30, stages: ['download', 'clip', 'write'], clipMinScore: 0.3 });
    const recs = Array.from({ length: 30 }, (_, i) => demoRecord(5, i).record).map((r, i) => {
      if (r.status === 'failed') return r;
      const clip = -0.5 + i / 30;
      const scores = r.scores.slice(0, 1).map((s) => ({ ...s, clip, kept: clip >= 0.3, rejectedBy: clip >= 0.3 ? [] : ['clip', ...(i % 3 ? [] : ['itm'])] }));
      const kept = scores[0].kept;
      return {
        ...r, scores, status: kept ? 'kept' as const : 'filtered' as const,
        labels: [{ label: i % 2 ? 'circle' : 'red: square', prob: 0.8 }, { label: 'star', prob: 0.2 }],
        clipEmbedding: { image: 'AAAAAA==', text: null },
      };
    });
    await writer.recordRows('rc', 'write', recs, { shardId: 's0' });
    const snap = (await reader.run('rc'))!;
    const scored = recs.filter((r) => r.status !== 'failed');
    const texts = scored.flatMap((r) => r.scores);
    const hist = snap.clipHistogram!;
    expect(hist.spec).toEqual({ min: -1, max: 1, buckets: 100 });
    expect(hist.counts.kept.reduce((a, b) => a + b, 0)).toBe(texts.filter((t) => t.kept).length);
    expect(hist.counts.dropped.reduce((a, b) => a + b, 0)).toBe(texts.filter((t) => !t.kept).length);
    // 0.3 is a bucket edge: every kept score lies at or above it, every dropped one below.
    expect(hist.counts.kept.slice(0, 65).every((n) => n === 0)).toBe(true);
    expect(hist.counts.dropped.slice(65).every((n) => n === 0)).toBe(true);
    const c = snap.counters;
    expect(c.rejectedBy).toEqual({
      clip: texts.filter((t) => t.rejectedBy!.includes('clip')).length,
      itm: texts.filter((t) => t.rejectedBy!.includes('itm')).length,
    });
    expect(c.labels).toEqual({
      circle: scored.filter((r) => r.labels![0].label === 'circle').length,
      'red: square': scored.filter((r) => r.labels![0].label === 'red: square').length,
    });
    expect(c.embeddingsWritten).toBe(scored.filter((r) => r.status === 'kept').length);
    expect(snap.meta.clipMinScore).toBe(0.3);
    const samples = await reader.samples('rc');
    const sample = samples.find((x) => x.status !== 'failed')!;
    const rec = recs.find((r) => r.key === sample.key)!;
    expect(sample.scores[0].clip).toBe(scoreOf(rec.scores[0], 'clip'));
    expect(sample.labels).toEqual(rec.labels);
    expect(samples.find((x) => x.status === 'failed')?.labels).toBeUndefined();
  });

  it('is idempotent per shard: a retried job does not count twice', async () => {
    const prefix = fresh();
    const writer = new StatsWriter({ redis, prefix });
    const reader = new StatsReader(redis, prefix);
    await writer.registerRun({ runId: 'r', input: 'x.csv', totalRows: 10 });
    const recs = Array.from({ length: 10 }, (_, i) => demoRecord(3, i).record);
    expect((await writer.recordRows('r', 'write', recs, { shardId: 's0' })).counted).toBe(true);
    expect((await writer.recordRows('r', 'write', recs, { shardId: 's0' })).counted).toBe(false);
    const snap = await reader.run('r');
    expect(snap!.counters.done).toBe(10);
    expect(snap!.counters.stages.write.rows).toBe(10);
  });

  it('keeps samples bounded, with thumbnails ≤ 8 KB that decode, filterable by status and noise', async () => {
    const prefix = fresh();
    const writer = new StatsWriter({ redis, prefix, maxSamples: 10, samplesPerShard: 4 });
    const reader = new StatsReader(redis, prefix);
    const producer = new DemoStatsProducer({ writer, runId: 'r', shards: 5, shardRows: 20 });
    await producer.register();
    for (let i = 0; i < 5; i++) await producer.shard(i);
    const samples = await reader.samples('r');
    expect(samples).toHaveLength(10);
    const withThumb = samples.filter((s) => s.thumb);
    expect(withThumb.length).toBeGreaterThan(0);
    for (const s of withThumb) {
      const jpg = Buffer.from(s.thumb!.replace(/^data:image\/jpeg;base64,/, ''), 'base64');
      expect(jpg.length).toBeLessThanOrEqual(THUMBNAIL_MAX_BYTES);
      const meta = await sharp(jpg).metadata();
      expect(meta.format).toBe('jpeg');
      expect(meta.width).toBeGreaterThan(32);
    }
    for (const s of samples.filter((x) => x.status === 'failed')) expect(s.thumb).toBeNull();
    const kept = await reader.samples('r', { status: 'kept' });
    expect(kept.every((s) => s.status === 'kept')).toBe(true);
    const noise = samples[0].noise!;
    expect((await reader.samples('r', { noise })).every((s) => s.noise === noise)).toBe(true);
  });

  it('trims the throughput series and prunes the oldest runs with all their keys', async () => {
    const prefix = fresh();
    const writer = new StatsWriter({ redis, prefix, seriesBucketSec: 1, seriesMaxPoints: 20, maxRuns: 2 });
    await writer.registerRun({ runId: 'old', input: 'a', startedAt: 1000 });
    const rec = [demoRecord(1, 0).record];
    const t0 = Date.now() - 100_000;
    for (let i = 0; i < 60; i++) await writer.recordRows('old', 'download', rec, { at: t0 + i * 1000 });
    const fields = await redis.hlen(`${prefix}:stats:run:{old}:ts:download`);
    expect(fields).toBeGreaterThanOrEqual(20);
    expect(fields).toBeLessThanOrEqual(36);
    expect(await keyCount(`${prefix}:stats:run:{old}`)).toBeGreaterThan(0);
    await writer.registerRun({ runId: 'mid', input: 'b', startedAt: 2000 });
    await writer.registerRun({ runId: 'new', input: 'c', startedAt: 3000 });
    expect(await keyCount(`${prefix}:stats:run:{old}`)).toBe(0);
    const runs = await new StatsReader(redis, prefix).listRuns();
    expect(runs.map((r) => r.meta.runId)).toEqual(['new', 'mid']);
  });

  it('tracks worker heartbeats: live, then lost after the TTL, and removed on a clean stop', async () => {
    const prefix = fresh();
    const clock = new ManualClock(Date.now());
    const writer = new StatsWriter({ redis, prefix, heartbeatTtlMs: 300, clock });
    // The reader's own default TTL is 15 s: liveness must follow the TTL the worker announced.
    const reader = new StatsReader(redis, prefix);
    await writer.recordRows('r', 'caption', Array.from({ length: 30 }, (_, i) => demoRecord(1, i).record), { shardId: 'a' });
    const info = await writer.heartbeat({ id: 'w1', stages: ['caption', 'filter'], device: 'cuda:0', concurrency: 2 });
    // 30 rows within this worker's first second.
    expect(info).toMatchObject({ rowsPerSec: 30, stageRates: { caption: 30 }, lastSeen: clock.now(), ttlMs: 300 });
    let ws = await reader.workers(clock.now());
    expect(ws).toHaveLength(1);
    expect(ws[0]).toMatchObject({ id: 'w1', live: true, device: 'cuda:0', stages: ['caption', 'filter'] });
    // Redis drops the worker's own key after the TTL.
    const pttl = await redis.pttl(`${prefix}:stats:{workers}:w1`);
    expect(pttl).toBeGreaterThan(0);
    expect(pttl).toBeLessThanOrEqual(300);
    await clock.advance(300);
    expect((await reader.workers(clock.now()))[0].live).toBe(true);
    await clock.advance(1);
    ws = await reader.workers(clock.now());
    expect(ws[0].live).toBe(false);
    // Listed as lost for 10 TTLs; the next heartbeat after that drops it.
    await clock.advance(10 * 300);
    await writer.heartbeat({ id: 'w3', stages: ['write'] });
    expect((await reader.workers(clock.now())).map((w) => w.id)).toEqual(['w3']);

    const hb = writer.startHeartbeat({ id: 'w2', stages: ['download'] }, 100);
    await vi.waitFor(async () => expect((await reader.workers(clock.now())).find((w) => w.id === 'w2')?.live).toBe(true));
    await hb.stop();
    expect((await reader.workers(clock.now())).find((w) => w.id === 'w2')).toBeUndefined();
  });

  it('keeps a run\'s counters when it is registered again (resume) and records its end', async () => {
    const prefix = fresh();
    const writer = new StatsWriter({ redis, prefix });
    const reader = new StatsReader(redis, prefix);
    await writer.registerRun({ runId: 'r', input: 'in.parquet', startedAt: 5000 });
    await writer.recordRows('r', 'write', [demoRecord(2, 0).record], { shardId: 's' });
    await writer.registerRun({ runId: 'r', input: 'in.parquet', totalRows: 1 });
    await writer.finishRun('r');
    const snap = await reader.run('r');
    expect(snap!.meta).toMatchObject({ startedAt: 5000, totalRows: 1, state: 'finished' });
    expect(snap!.meta.finishedAt).toBeGreaterThan(0);
    expect(snap!.counters.done).toBe(1);
    expect(await reader.run('missing')).toBeNull();
  });
});
