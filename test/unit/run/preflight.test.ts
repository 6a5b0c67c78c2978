import { chmodSync, copyFileSync, cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { parquetWriteFile } from 'hyparquet-writer';
import { afterAll, describe, expect, it } from 'vitest';
import { preflight } from '../../../src/run/preflight.ts';
import { testConfig } from '../../helpers/config.ts';
import { readEntries, shardName, writeShardedSafetensors } from '../../helpers/safetensors-writer.ts';

const dir = mkdtempSync(join(tmpdir(), 'capfilt-preflight-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const MODELS = new URL('../../../models/', import.meta.url).pathname;

function captureLog() {
  const lines: Array<{ level: number; msg: string }> = [];
  const log = pino({ level: 'info' }, new Writable({ write(c: Buffer, _e, cb) { lines.push(JSON.parse(c.toString()) as { level: number; msg: string }); cb(); } }));
  return { log, lines };
}

function configFor(input: string, extra: Record<string, unknown> = {}) {
  const values = { 'input.path': input, 'output.dir': join(dir, 'out'), 'pipeline.stages': 'download,write', ...extra };
  return testConfig(values).config;
}

function file(name: string, body: string): string {
  const p = join(dir, name);
  writeFileSync(p, body);
  return p;
}

const check = (input: string, extra: Record<string, unknown> = {}, workers = false) => preflight({ config: configFor(input, extra), log: captureLog().log, workers });

describe('preflight: input', () => {
  it('passes a good csv, tsv, jsonl, txt and parquet file and a folder of them', async () => {
    const csv = file('ok.csv', 'url,caption\nhttp://a.test/1.jpg,one\n');
    await expect(check(csv)).resolves.toMatchObject({ files: [csv], empty: false });
    await expect(check(file('ok.tsv', 'url\tcaption\nhttp://a.test/1.jpg\tone\n'))).resolves.toMatchObject({ empty: false });
    await expect(check(file('ok.jsonl', '{"url":"http://a.test/1.jpg","caption":"one"}\n'))).resolves.toMatchObject({ empty: false });
    await expect(check(file('ok.txt', 'http://a.test/1.jpg\n'))).resolves.toMatchObject({ empty: false });
    const pq = join(dir, 'ok.parquet');
    await parquetWriteFile({ filename: pq, columnData: [{ name: 'url', data: ['http://a.test/1.jpg'], type: 'STRING' }, { name: 'caption', data: ['one'], type: 'STRING' }] });
    await expect(check(pq)).resolves.toMatchObject({ empty: false });
    const folder = join(dir, 'folder');
    mkdirSync(folder);
    copyFileSync(csv, join(folder, 'a.csv'));
    copyFileSync(pq, join(folder, 'b.parquet'));
    await expect(check(folder)).resolves.toMatchObject({ files: [join(folder, 'a.csv'), join(folder, 'b.parquet')] });
  });

  it('a missing input is INPUT_UNREADABLE, an unknown extension INPUT_FORMAT_UNSUPPORTED', async () => {
    await expect(check(join(dir, 'nope.csv'))).rejects.toMatchObject({ code: 'INPUT_UNREADABLE' });
    await expect(check(file('data.xlsx', 'x'))).rejects.toMatchObject({ code: 'INPUT_FORMAT_UNSUPPORTED' });
  });

  it.skipIf(process.getuid?.() === 0)('an unreadable file is INPUT_UNREADABLE', async () => {
    const p = file('locked.csv', 'url\nhttp://a.test/1.jpg\n');
    chmodSync(p, 0o000);
    await expect(check(p)).rejects.toMatchObject({ code: 'INPUT_UNREADABLE' });
  });

  it('a missing column is INPUT_COLUMN_MISSING, named, for csv, parquet and jsonl', async () => {
    await expect(check(file('nocap.csv', 'url,text\nhttp://a.test/1.jpg,one\n'))).rejects.toMatchObject({ code: 'INPUT_COLUMN_MISSING', message: expect.stringContaining('"caption"') });
    const pq = join(dir, 'nourl.parquet');
    await parquetWriteFile({ filename: pq, columnData: [{ name: 'link', data: ['http://a.test/1.jpg'], type: 'STRING' }, { name: 'caption', data: ['one'], type: 'STRING' }] });
    await expect(check(pq)).rejects.toMatchObject({ code: 'INPUT_COLUMN_MISSING', message: expect.stringContaining('"url"') });
    const jsonl = file('nourl.jsonl', '{"link":"http://a.test/1.jpg"}\n{"link":"http://a.test/2.jpg"}\n');
    await expect(check(jsonl)).rejects.toMatchObject({ code: 'INPUT_COLUMN_MISSING', message: expect.stringContaining('"url"') });
    // Some rows without a URL are row failures, not a missing column.
    await expect(check(file('someurl.jsonl', '{"link":"x"}\n{"url":"http://a.test/2.jpg"}\n'))).resolves.toMatchObject({ empty: false });
  });

  it('an empty input is INPUT_EMPTY; with allowEmpty a warning', async () => {
    for (const p of [file('empty.jsonl', ''), file('header-only.csv', 'url,caption\n'), file('blank.txt', '\n\n')]) {
      await expect(check(p)).rejects.toMatchObject({ code: 'INPUT_EMPTY' });
    }
    const empty = join(dir, 'empty.parquet');
    await parquetWriteFile({ filename: empty, columnData: [{ name: 'url', data: [], type: 'STRING' }, { name: 'caption', data: [], type: 'STRING' }] });
    await expect(check(empty)).rejects.toMatchObject({ code: 'INPUT_EMPTY' });
    const { log, lines } = captureLog();
    await expect(preflight({ config: configFor(empty, { 'input.allowEmpty': true }), log, workers: false })).resolves.toMatchObject({ empty: true });
    expect(lines.filter((l) => l.level === 40).map((l) => l.msg)).toEqual([expect.stringContaining('holds no rows')]);
  });
});

describe('preflight: output', () => {
  const input = () => file('in.csv', 'url,caption\nhttp://a.test/1.jpg,one\n');

  it('creates a missing output folder and leaves nothing in it', async () => {
    const out = join(dir, 'new', 'deeper');
    await check(input(), { 'output.dir': out });
    expect((await import('node:fs')).readdirSync(out)).toEqual([]);
  });

  it('an output path that is a file, or under one, is OUTPUT_UNWRITABLE', async () => {
    const f = file('a-file', 'x');
    await expect(check(input(), { 'output.dir': f })).rejects.toMatchObject({ code: 'OUTPUT_UNWRITABLE', message: expect.stringContaining('output.dir') });
    await expect(check(input(), { 'output.dir': join(f, 'sub') })).rejects.toMatchObject({ code: 'OUTPUT_UNWRITABLE' });
  });

  it.skipIf(process.getuid?.() === 0)('a read-only output folder is OUTPUT_UNWRITABLE', async () => {
    const ro = join(dir, 'ro');
    mkdirSync(ro);
    chmodSync(ro, 0o500);
    await expect(check(input(), { 'output.dir': ro })).rejects.toMatchObject({ code: 'OUTPUT_UNWRITABLE' });
  });
});

describe('preflight: models (when the workers run here)', () => {
  const input = () => file('in2.csv', 'url,caption\nhttp://a.test/1.jpg,one\n');
  const stages = { 'pipeline.stages': 'download,caption,filter,write' };

  it('accepts the demo BLIP folders and the demo CLIP folder', async () => {
    await expect(check(input(), { ...stages, 'models.captioner': join(MODELS, 'demo'), 'models.filter': join(MODELS, 'demo') }, true)).resolves.toBeTruthy();
    await expect(check(input(), { 'pipeline.stages': 'download,clip,write', 'models.clip': join(MODELS, 'demo-clip') }, true)).resolves.toBeTruthy();
  });

  it('a missing folder, a folder of the wrong family or architecture, missing weights or tokenizer: each coded', async () => {
    const blip = { ...stages, 'models.captioner': join(MODELS, 'demo'), 'models.filter': join(MODELS, 'demo') };
    await expect(check(input(), { ...blip, 'models.filter': join(dir, 'no-model') }, true)).rejects.toMatchObject({ code: 'MODEL_DIR_INVALID', message: expect.stringContaining('models.filter') });
    await expect(check(input(), { ...blip, 'models.captioner': join(MODELS, 'demo', 'filter') }, true)).rejects.toMatchObject({ code: 'MODEL_DIR_INVALID', message: expect.stringContaining('expected BlipForConditionalGeneration') });
    await expect(check(input(), { ...blip, 'models.filter': join(MODELS, 'demo-clip') }, true)).rejects.toMatchObject({ code: 'MODEL_DIR_INVALID' });

    const broken = join(dir, 'broken');
    cpSync(join(MODELS, 'demo', 'filter'), broken, { recursive: true, filter: (src) => !src.endsWith('.safetensors') });
    await expect(check(input(), { ...blip, 'models.filter': broken }, true)).rejects.toMatchObject({ code: 'MODEL_DIR_INVALID', message: expect.stringContaining('model.safetensors') });
    rmSync(join(broken, 'tokenizer.json'));
    rmSync(join(broken, 'vocab.txt'));
    await expect(check(input(), { ...blip, 'models.filter': broken }, true)).rejects.toMatchObject({ code: 'TOKENIZER_INVALID' });
    writeFileSync(join(broken, 'config.json'), '{"architectures": ["BlipForImageTextRetrieval"], "model_type": "blip", "vision_config": 7}');
    await expect(check(input(), { ...blip, 'models.filter': broken }, true)).rejects.toMatchObject({ code: 'MODEL_CONFIG_INVALID' });
  });

  it('a sharded filter checkpoint passes with all its shards and is MODEL_DIR_INVALID with one missing', async () => {
    const blip = { ...stages, 'models.captioner': join(MODELS, 'demo'), 'models.filter': join(MODELS, 'demo') };
    const sharded = join(dir, 'sharded');
    cpSync(join(MODELS, 'demo', 'filter'), sharded, { recursive: true, filter: (src) => !src.endsWith('.safetensors') });
    writeShardedSafetensors(sharded, readEntries(join(MODELS, 'demo', 'filter', 'model.safetensors')), 2);
    await expect(check(input(), { ...blip, 'models.filter': sharded }, true)).resolves.toBeTruthy();
    rmSync(join(sharded, shardName(1, 2)));
    await expect(check(input(), { ...blip, 'models.filter': sharded }, true)).rejects.toMatchObject({ code: 'MODEL_DIR_INVALID', message: expect.stringMatching(/models\.filter.*shard\(s\) not in .*model-00002-of-00002\.safetensors/) });
  });

  it('skips the models when the workers run elsewhere', async () => {
    await expect(check(input(), { ...stages, 'models.captioner': join(dir, 'no-model'), 'models.filter': join(dir, 'no-model') }, false)).resolves.toBeTruthy();
  });
});
