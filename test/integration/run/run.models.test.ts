import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readShardParquet } from '../../../src/io/writers/shard-parquet.ts';
import { passes } from '../../../src/pipeline/decisions.ts';
import { runPipeline } from '../../../src/run/run.ts';
import { logger } from '../../../src/core/logger.ts';
import { fixtureConfig, startFixture, type PipelineFixture } from '../../helpers/pipeline-fixture.ts';
import { REDIS_URL, deletePrefix, uniquePrefix } from '../../helpers/redis-cleanup.ts';
import { t1ModelDir } from '../../helpers/t1-model.ts';

/** Stage selection with the model stages: the real runtime on the t1 checkpoints. */
const log = logger().child({ test: 'pipeline-models' });
let fx: PipelineFixture;
let model: string;
const prefixes: string[] = [];

beforeAll(async () => {
  fx = await startFixture(60);
  model = t1ModelDir();
});
afterAll(async () => {
  await fx.close();
  rmSync(model, { recursive: true, force: true });
  for (const p of prefixes) await deletePrefix(p);
});

async function run(name: string, stages: string, extra: Record<string, unknown> = {}) {
  const prefix = uniquePrefix(name);
  prefixes.push(prefix);
  const out = join(fx.dir, `out-${name}`);
  const loaded = fixtureConfig(fx, out, {
    'redis.prefix': prefix, 'shards.rows': 25, 'pipeline.stages': stages,
    'models.captioner': model, 'models.filter': model, 'caption.maxLength': 10, 'caption.minLength': 3, ...extra,
  }, { REDIS_URL });
  const summary = await runPipeline({ loaded, workers: true, progress: 'none', log });
  const files = readdirSync(out).filter((f) => f.endsWith('.parquet')).sort();
  const rows = (await Promise.all(files.map((f) => readShardParquet(join(out, f))))).flat();
  return { summary, rows, config: loaded.config };
}

describe('stage selection with the model stages (t1 checkpoints)', () => {
  it('filter only: scores the web text, decides by ITM, writes no synthetic captions', async () => {
    const { summary, rows } = await run('filteronly', 'download,filter,write', { 'filter.itmThreshold': 0.5 });
    expect(summary).toMatchObject({ status: 'done', reconciled: true, rows: 60, failed: fx.failing.size });
    for (const r of rows.filter((x) => x.status !== 'failed')) {
      expect(r.captions).toEqual([]);
      expect(r.scores.map((s) => s.source)).toEqual(['web']);
      const keep = passes(r.scores[0].itm, r.scores[0].itc, { itmThreshold: 0.5, itcThreshold: null });
      expect(r.status).toBe(keep ? 'kept' : 'filtered');
      expect(r.reason).toBe(keep ? 'KEPT_WEB_TEXT' : 'FILTER_NO_TEXT_KEPT');
    }
    expect(summary.kept + summary.filtered).toBe(60 - fx.failing.size);
  });

  it('caption only: K captions per image, rows kept unfiltered', async () => {
    const { summary, rows } = await run('captiononly', 'download,caption,write', { 'caption.k': 2, 'filter.selection': 'synthetic-first' });
    expect(summary).toMatchObject({ status: 'done', reconciled: true, rows: 60, kept: 60 - fx.failing.size, filtered: 0 });
    for (const r of rows.filter((x) => x.status !== 'failed')) {
      expect(r.captions).toHaveLength(2);
      expect(r.scores).toEqual([]);
      expect([r.reason, r.selected]).toEqual(['KEPT_UNFILTERED', r.captions[0]]);
    }
  });

  it('full CapFilt with K=3, keep top 1 by ITC: every text scored, at most one synthetic caption kept', async () => {
    const { summary, rows } = await run('full', 'download,caption,filter,write', { 'caption.k': 3, 'caption.keepTop': 1, 'filter.itmThreshold': 0.3, 'filter.selection': 'best-scoring' });
    expect(summary).toMatchObject({ status: 'done', reconciled: true, rows: 60 });
    for (const r of rows.filter((x) => x.status !== 'failed')) {
      expect(r.captions).toHaveLength(3);
      expect(r.scores.map((s) => s.source)).toEqual(['web', 'synthetic', 'synthetic', 'synthetic']);
      expect(r.scores.filter((s) => s.source === 'synthetic' && s.kept).length).toBeLessThanOrEqual(1);
      const kept = r.scores.filter((s) => s.kept);
      expect(r.status).toBe(kept.length ? 'kept' : 'filtered');
      if (kept.length) expect(r.selected).toBe([...kept].sort((a, b) => b.itm - a.itm)[0].text);
    }
  });
});

describe('trusted (human-annotated) input', () => {
  it('is merged unfiltered: no synthetic captions, no scores, kept with its own text', async () => {
    const { summary, rows } = await run('trusted', 'download,caption,filter,write', { 'input.trusted': true });
    expect(summary).toMatchObject({ status: 'done', reconciled: true, rows: 60, kept: 60 - fx.failing.size, filtered: 0 });
    for (const r of rows.filter((x) => x.status !== 'failed')) {
      expect([r.trusted, r.reason, r.captions, r.scores, r.selected]).toEqual([true, 'KEPT_TRUSTED', [], [], r.text]);
    }
  });
});

describe('shards whose stage fails for good', () => {
  it('a run with a missing model folder fails before feeding, naming the folder', async () => {
    const err = await run('nomodel', 'download,caption,write', { 'models.captioner': join(fx.dir, 'no-such-model') }).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/^MODEL_DIR_INVALID: .*no-such-model/);
  });

  it('a worker whose caption stage cannot load its model settles every shard: pending rows fail with STAGE_FAILED, accounting stays exact', async () => {
    const prefix = uniquePrefix('settle');
    prefixes.push(prefix);
    const out = join(fx.dir, 'out-settle');
    const loaded = fixtureConfig(fx, out, {
      'redis.prefix': prefix, 'shards.rows': 25, 'pipeline.stages': 'download,caption,write', 'models.captioner': join(fx.dir, 'no-such-model'),
    }, { REDIS_URL });
    const { WorkerHost } = await import('../../../src/workers/host.ts');
    const host = new WorkerHost({ config: loaded.config, stages: loaded.config.pipeline.stages, log });
    await host.start();
    try {
      const summary = await runPipeline({ loaded, workers: false, progress: 'none', log });
      expect(summary).toMatchObject({ status: 'done', reconciled: true, rows: 60, kept: 0, filtered: 0, failed: 60 });
      const files = readdirSync(out).filter((f) => f.endsWith('.parquet')).sort();
      const rows = (await Promise.all(files.map((f) => readShardParquet(join(out, f))))).flat();
      expect(rows).toHaveLength(60);
      for (const r of rows) {
        if (fx.failing.has(r.rowIndex)) expect(r.reason).toMatch(/^(DOWNLOAD_HTTP_STATUS|IMAGE_NOT_AN_IMAGE)$/);
        else expect([r.reason, r.reasonDetail?.startsWith('caption: MODEL_DIR_INVALID:')]).toEqual(['STAGE_FAILED', true]);
      }
    } finally {
      await host.close();
    }
  });
});
