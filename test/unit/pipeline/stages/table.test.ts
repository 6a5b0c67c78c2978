import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { configSchema } from '../../../../src/config/schema.ts';
import { loadConfig } from '../../../../src/config/load.ts';
import { SCORE_NAMES, scoreOf, setScore } from '../../../../src/core/records.ts';
import { STAGE_ORDER } from '../../../../src/core/shard.ts';
import { RECORD_COLUMNS } from '../../../../src/io/writers/columns.ts';
import { writeShardFiles } from '../../../../src/io/writers/shard.ts';
import { readShardParquet } from '../../../../src/io/writers/shard-parquet.ts';
import {
  STAGE_TABLE, checkChain, checkTable, configFor, defineStage, describeStages, outputColumns, scoreColumns, scoreNames, stageNames, withStage,
} from '../../../../src/pipeline/stages/table.ts';
import { STAGES as STATS_STAGES } from '../../../../src/telemetry/stats-schema.ts';
import { scored } from '../../../helpers/records-fixture.ts';

const dir = mkdtempSync(join(tmpdir(), 'capfilt-table-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const noop = defineStage({ name: 'noop', config: ['filter'], role: null, scores: ['noop'], columns: scoreColumns('noop'), load: async () => ({ run: async () => undefined }) });

describe('the stage table', () => {
  it('is the source of the stage lists below the pipeline', () => {
    expect(stageNames()).toEqual([...STAGE_ORDER]);
    expect(STATS_STAGES).toEqual(STAGE_ORDER);
    const pipeline = configSchema.shape.pipeline.shape;
    expect(pipeline.stages.element.options).toEqual(stageNames());
    expect(Object.keys(pipeline.concurrency.shape)).toEqual(stageNames());
    expect(Object.keys(loadConfig({ env: {} }).config.pipeline.concurrency)).toEqual(stageNames());
    expect(describeStages()).toBe('download, caption (captioner), filter (imageTextScorer), clip (embedder), write');
    checkTable(STAGE_TABLE);
  });

  it('declares the record columns and scores in one place: the built-in table writes exactly RECORD_COLUMNS', () => {
    const typed = (cs: readonly { name: string; type: string }[]) => cs.map((c) => `${c.name}:${c.type}`);
    expect(typed(outputColumns())).toEqual(typed(RECORD_COLUMNS));
    expect(outputColumns().slice(0, 13)).toEqual(RECORD_COLUMNS.slice(0, 13));
    expect(outputColumns().map((c) => `${c.name}:${c.type}`)).toEqual([
      'width:int32', 'height:int32', 'original_width:int32', 'original_height:int32', 'sha256:string', 'image_format:string', 'duplicate_of:string',
      'http_status:int32', 'final_url:string', 'download_bytes:int64', 'download_attempts:int32', 'download_ms:int32',
      'captions:list<string>',
      'score_text:list<string>', 'score_source:list<string>', 'score_itm:list<double>', 'score_itc:list<double>', 'score_kept:list<boolean>', 'score_rejected_by:list<string>', 'web_itm:double', 'web_itc:double',
      'score_clip:list<double>', 'web_clip:double', 'labels:list<string>', 'label_probs:list<double>', 'clip_top_threshold:double', 'clip_top_provisional:boolean',
      'near_duplicate_of:string', 'near_duplicate_cosine:double',
    ]);
    expect(scoreNames()).toEqual([...SCORE_NAMES, 'clip']);
    expect(Object.fromEntries(STAGE_TABLE.map((s) => [s.name, s.role]))).toEqual({ download: null, caption: 'captioner', filter: 'imageTextScorer', clip: 'embedder', write: null });
  });

  it('gives each stage only the config sections it declares', () => {
    const { config } = loadConfig({ env: {} });
    expect(Object.keys(configFor(STAGE_TABLE[0], config))).toEqual(['download', 'image']);
    expect(Object.keys(configFor(STAGE_TABLE[2], config))).toEqual(['filter', 'caption']);
    expect(Object.keys(configFor(STAGE_TABLE[3], config))).toEqual(['clip', 'filter', 'caption']);
    expect(configFor(STAGE_TABLE[4], config)).toEqual({ output: config.output, s3: config.s3 });
  });

  it('adds a stage with one entry; its score columns land in the parquet and come back', async () => {
    const table = withStage(STAGE_TABLE, noop, { after: 'filter' });
    expect(stageNames(table)).toEqual(['download', 'caption', 'filter', 'noop', 'clip', 'write']);
    const records = [scored(0, 0.7, 0.2, 'kept'), scored(1, 0.1, 0.2, 'filtered')];
    for (const r of records) for (const t of r.scores) setScore(t, 'noop', t.itm / 2);
    const images = { get: async () => new Uint8Array([1, 2, 3]) };
    const { paths } = await writeShardFiles(records, { outDir: dir, name: '00001', images, startTime: Date.now(), columns: outputColumns(table) });
    const back = await readShardParquet(paths.parquet);
    expect(back.map((r) => r.scores.map((t) => scoreOf(t, 'noop')))).toEqual([[0.35, 0.1], [0.05, 0.1]]);
    expect(back[0].scores[0]).toEqual(records[0].scores[0]);
    // Read with the stage's own table too.
    expect((await readShardParquet(paths.parquet, outputColumns(table)))[1].scores[0]).toEqual(records[1].scores[0]);
  });

  it('refuses inconsistent tables and chains', () => {
    expect(() => withStage(STAGE_TABLE, { ...noop, name: 'filter' }, { after: 'filter' })).toThrow(/stage filter is listed twice/);
    expect(() => withStage(STAGE_TABLE, { ...noop, columns: [] }, { after: 'filter' })).toThrow(/score noop has no score_noop column/);
    expect(() => withStage(STAGE_TABLE, { ...noop, scores: ['kept'], columns: scoreColumns('kept') }, { after: 'filter' })).toThrow(/reserved/);
    expect(() => withStage(STAGE_TABLE, noop, { after: 'write' })).toThrow(/last stage must be write/);
    expect(() => withStage(STAGE_TABLE, noop, { after: 'nope' })).toThrow(/no stage nope/);
    expect(() => checkChain(['download', 'noop', 'write'])).toThrow(/unknown stage noop/);
    expect(() => checkChain(['download', 'filter'])).toThrow(/must include "download" and "write"/);
    expect(() => checkChain(['download', 'filter', 'caption', 'write'])).toThrow(/pipeline order/);
    expect(() => checkChain(['download', 'noop', 'write'], withStage(STAGE_TABLE, noop, { after: 'filter' }))).not.toThrow();
  });
});
