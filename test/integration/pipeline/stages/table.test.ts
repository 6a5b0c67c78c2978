import { readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { asyncBufferFromFile, parquetMetadataAsync } from 'hyparquet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LoadedConfig } from '../../../../src/config/load.ts';
import { logger } from '../../../../src/core/logger.ts';
import { scoreOf } from '../../../../src/core/records.ts';
import type { StageName } from '../../../../src/core/shard.ts';
import { readShardParquet } from '../../../../src/io/writers/shard-parquet.ts';
import { STAGE_TABLE, defineStage, outputColumns, scoreColumns, withStage } from '../../../../src/pipeline/stages/table.ts';
import { runPipeline } from '../../../../src/run/run.ts';
import { fixtureConfig, startFixture, type PipelineFixture } from '../../../helpers/pipeline-fixture.ts';
import { REDIS_URL, deletePrefix, uniquePrefix } from '../../../helpers/redis-cleanup.ts';
import { t1ModelDir } from '../../../helpers/t1-model.ts';

/**
 * "A new filter kind = one stage file + one table entry": the no-op stage of
 * test/helpers/noop-stage.ts, registered with one entry, runs between filter and write in the
 * real chain (BullMQ workers on Redis, the t1 model for the filter), and its score reaches every
 * shard's parquet as score_noop / web_noop.
 */
const log = logger().child({ test: 'stage-table' });
let fx: PipelineFixture;
let model: string;
const prefix = uniquePrefix('stage-table');

const noop = defineStage({
  name: 'noop',
  config: ['filter'],
  role: null,
  scores: ['noop'],
  columns: scoreColumns('noop'),
  load: async () => ({ run: (await import('../../../helpers/noop-stage.ts')).noopShard }),
});

beforeAll(async () => {
  fx = await startFixture(50);
  model = t1ModelDir();
});
afterAll(async () => {
  await fx.close();
  rmSync(model, { recursive: true, force: true });
  await deletePrefix(prefix);
});

describe('the stage table', () => {
  it('runs a no-op stage registered between filter and write through the real chain; its columns reach the parquet', async () => {
    const table = withStage(STAGE_TABLE, noop, { after: 'filter' });
    expect(table.map((s) => s.name)).toEqual(['download', 'caption', 'filter', 'noop', 'clip', 'write']);
    const out = join(fx.dir, 'out-noop');
    const base = fixtureConfig(fx, out, { 'redis.prefix': prefix, 'pipeline.stages': 'download,filter,write', 'shards.rows': 25, 'models.filter': model }, { REDIS_URL });
    // The config schema knows the built-in stages; a table with more names its own chain.
    const loaded: LoadedConfig = { ...base, config: { ...base.config, pipeline: { ...base.config.pipeline, stages: ['download', 'filter', 'noop', 'write'] as StageName[] } } };

    const s = await runPipeline({ loaded, table, workers: true, progress: 'none', log });
    expect(s).toMatchObject({ status: 'done', reconciled: true, rows: 50, totalShards: 2, failed: fx.failing.size });

    const files = readdirSync(out).filter((f) => f.endsWith('.parquet')).sort();
    expect(files).toEqual(['00000.parquet', '00001.parquet']);
    for (const f of files) {
      const meta = await parquetMetadataAsync(await asyncBufferFromFile(join(out, f)));
      const names = meta.schema.slice(1).filter((e) => e.name !== 'list' && e.name !== 'element').map((e) => e.name);
      // The built-in columns as before, the no-op stage's after the filter's, the selected caption last.
      expect(names.slice(names.indexOf('status'))).toEqual(['status', 'reason', 'reason_detail', ...outputColumns(table).map((c) => c.name), 'selected']);
      expect(names.slice(names.indexOf('web_itc') + 1)).toEqual(['score_noop', 'web_noop', 'score_clip', 'web_clip', 'labels', 'label_probs', 'clip_top_threshold', 'clip_top_provisional', 'near_duplicate_of', 'near_duplicate_cosine', 'selected']);
      // The stage ran in the chain, before write: its time is in the shard's stats.
      const stats = JSON.parse(readFileSync(join(out, f.replace('.parquet', '_stats.json')), 'utf8'));
      expect(Object.keys(stats.timings_ms)).toEqual(['download', 'filter', 'noop']);
    }
    const rows = (await Promise.all(files.map((f) => readShardParquet(join(out, f))))).flat();
    const scored = rows.filter((r) => r.scores.length > 0);
    expect(scored.length).toBe(50 - fx.failing.size);
    for (const r of scored) {
      expect(['kept', 'filtered']).toContain(r.status);
      for (const t of r.scores) expect(scoreOf(t, 'noop')).toBe(0);
    }
    for (const r of rows.filter((x) => x.status === 'failed')) expect(r.scores).toEqual([]);
  });
});
