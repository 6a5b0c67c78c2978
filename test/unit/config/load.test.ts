import { mkdtempSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { isCapfiltError } from '../../../src/core/errors.ts';
import { DEFAULT_CONFIG_FILE, coerce, envNameOf, leafPaths, loadConfig, parseSetArgs } from '../../../src/config/load.ts';

const dir = mkdtempSync(join(tmpdir(), 'capfilt-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function userFile(name: string, text: string): string {
  const f = join(dir, name);
  writeFileSync(f, text);
  return f;
}

function errorOf(fn: () => unknown): { code: string; message: string } {
  try {
    fn();
  } catch (e) {
    if (isCapfiltError(e)) return { code: e.code, message: e.message };
    throw e;
  }
  throw new Error('expected an error');
}

describe('default.yaml', () => {
  it('is a complete, valid configuration on its own with the paper defaults', () => {
    const { config, isExplicit } = loadConfig({ env: {} });
    expect(config.shards.rows).toBe(1000);
    expect(config.caption).toMatchObject({ k: 1, keepTop: null, method: 'nucleus', topP: 0.9, repetitionPenalty: 1.1, prompt: 'a picture of ' });
    expect(config.filter).toMatchObject({ itmThreshold: 0.5, itcThreshold: null, selection: 'original-first' });
    expect(config.pipeline.stages).toEqual(['download', 'caption', 'filter', 'write']);
    expect(isExplicit('redis.url')).toBe(false);
  });

  it('documents every option with a comment line above it or above its section', () => {
    const lines = readFileSync(DEFAULT_CONFIG_FILE, 'utf8').split('\n');
    const paths = leafPaths(parse(lines.join('\n')));
    const undocumented: string[] = [];
    for (const p of paths) {
      const key = p.split('.').at(-1)!;
      const i = lines.findIndex((l) => new RegExp(`^\\s*${key}:`).test(l));
      expect(i, p).toBeGreaterThanOrEqual(0);
      // A key is documented by the comment block right above it or above its group of keys.
      let j = i - 1;
      while (j >= 0 && /^\s+\w+:/.test(lines[j]) && !/^\s*#/.test(lines[j])) j--;
      if (j < 0 || !/^\s*#/.test(lines[j])) undocumented.push(p);
    }
    expect(undocumented).toEqual([]);
  });
});

describe('merge order: default < file < env < flags', () => {
  it('applies each layer and remembers where a value came from', () => {
    const file = userFile('a.yaml', 'pipeline:\n  maxInFlightShards: 6\nfilter:\n  itmThreshold: 0.7\ncaption:\n  k: 4\n');
    const loaded = loadConfig({
      file,
      env: { CAPFILT_PIPELINE_MAX_IN_FLIGHT_SHARDS: '8', REDIS_URL: 'redis://10.0.0.5:6380', CAPFILT_PIPELINE_STAGES: 'download,filter,write' },
      overrides: [{ path: 'filter.itmThreshold', value: '0.65', source: '--itm' }],
    });
    expect(loaded.config.pipeline.maxInFlightShards).toBe(8);
    expect(loaded.config.filter.itmThreshold).toBe(0.65);
    expect(loaded.config.caption.k).toBe(4);
    expect(loaded.config.redis.url).toBe('redis://10.0.0.5:6380');
    expect(loaded.config.pipeline.stages).toEqual(['download', 'filter', 'write']);
    expect(loaded.sourceOf('caption.k')).toBe(`file ${file}`);
    expect(loaded.sourceOf('pipeline.maxInFlightShards')).toBe('env CAPFILT_PIPELINE_MAX_IN_FLIGHT_SHARDS');
    expect(loaded.sourceOf('filter.itmThreshold')).toBe('--itm');
    expect(loaded.isExplicit('redis.url')).toBe(true);
    expect(loaded.isExplicit('redis.prefix')).toBe(false);
  });

  it('keeps sibling options of a section the user file only partly sets', () => {
    const file = userFile('b.yaml', 'pipeline:\n  concurrency:\n    write: 5\n');
    const { config } = loadConfig({ file, env: {} });
    expect(config.pipeline.concurrency).toEqual({ download: 2, caption: 1, filter: 1, clip: 1, write: 5 });
  });

  it('maps option paths to environment names', () => {
    expect(envNameOf('pipeline.maxInFlightShards')).toBe('CAPFILT_PIPELINE_MAX_IN_FLIGHT_SHARDS');
    expect(envNameOf('pipeline.concurrency.download')).toBe('CAPFILT_PIPELINE_CONCURRENCY_DOWNLOAD');
    expect(envNameOf('download.ssrfAllowlist')).toBe('CAPFILT_DOWNLOAD_SSRF_ALLOWLIST');
  });

  it('coerces strings to the type of the default', () => {
    expect(coerce('8', 4)).toBe(8);
    expect(coerce('0.3', null)).toBe(0.3);
    expect(coerce('null', null)).toBe(null);
    expect(coerce('yes', false)).toBe(true);
    expect(coerce('a, b,,c', [])).toEqual(['a', 'b', 'c']);
    expect(coerce('abc', 4)).toBe('abc');
    expect(coerce('a picture of ', 'x')).toBe('a picture of ');
  });
});

describe('errors name the option, what was expected, what was given and where from', () => {
  it.each([
    [{ CAPFILT_PIPELINE_MAX_IN_FLIGHT_SHARDS: '0' }, 'option pipeline.maxInFlightShards: expected a number > 0, got 0 (from env CAPFILT_PIPELINE_MAX_IN_FLIGHT_SHARDS)'],
    [{ CAPFILT_SHARDS_ROWS: 'many' }, 'option shards.rows: expected a number, got "many" (from env CAPFILT_SHARDS_ROWS)'],
    [{ CAPFILT_SHARDS_ROWS: '2.5' }, 'option shards.rows: expected an integer, got 2.5'],
    [{ CAPFILT_FILTER_SELECTION: 'worst' }, 'option filter.selection: expected one of "original-first", "best-scoring", "synthetic-first", got "worst"'],
    [{ REDIS_URL: 'localhost:6379' }, 'option redis.url: expected a redis://, rediss://, redis+cluster:// or rediss+cluster:// URL, got "localhost:6379" (from env REDIS_URL)'],
    [{ CAPFILT_PIPELINE_STAGES: 'caption,filter' }, 'option pipeline.stages: expected a list that includes "download"'],
    [{ CAPFILT_CAPTION_K: '2', CAPFILT_CAPTION_KEEP_TOP: '3' }, 'option caption.keepTop: expected at most caption.k (2), got 3'],
    [{ CAPFILT_MODELS_DEVICE: 'tpu' }, 'option models.device: expected "cpu" or "cuda:N", got "tpu"'],
  ])('%j', (env, text) => {
    const e = errorOf(() => loadConfig({ env }));
    expect(e.code).toBe('CONFIG_INVALID');
    expect(e.message).toContain(text);
  });

  it('reports a misspelt option in the user file with the file name', () => {
    const file = userFile('typo.yaml', 'pipeline:\n  maxInflightShards: 3\n');
    const e = errorOf(() => loadConfig({ file, env: {} }));
    expect(e.message).toContain(`unknown option pipeline.maxInflightShards (from file ${file})`);
  });

  it('reports an unknown flag path and a malformed --set', () => {
    expect(errorOf(() => loadConfig({ env: {}, overrides: [{ path: 'filter.itm', value: '1', source: '--set filter.itm' }] })).message)
      .toContain('unknown option filter.itm (from --set filter.itm)');
    expect(errorOf(() => parseSetArgs(['filter.itmThreshold'])).code).toBe('CLI_USAGE');
    expect(parseSetArgs(['filter.itmThreshold=0.6'])).toEqual([{ path: 'filter.itmThreshold', value: '0.6', source: '--set filter.itmThreshold' }]);
  });

  it('takes models.spinning auto (the default), on or off, and refuses anything else', () => {
    expect(loadConfig({ env: {} }).config.models.spinning).toBe('auto');
    expect(loadConfig({ env: {}, overrides: [{ path: 'models.spinning', value: 'off', source: '--spinning' }] }).config.models.spinning).toBe('off');
    const e = errorOf(() => loadConfig({ env: {}, overrides: [{ path: 'models.spinning', value: 'sometimes', source: '--spinning' }] }));
    expect(e.code).toBe('CONFIG_INVALID');
    expect(e.message).toContain('models.spinning');
  });

  it('reports unreadable and malformed files', () => {
    expect(errorOf(() => loadConfig({ file: join(dir, 'missing.yaml'), env: {} })).code).toBe('CONFIG_FILE_UNREADABLE');
    const bad = userFile('bad.yaml', 'pipeline: [1, 2\n');
    expect(errorOf(() => loadConfig({ file: bad, env: {} })).message).toContain(`configuration file ${bad} is not valid YAML/JSON`);
    const list = userFile('list.yaml', '- a\n- b\n');
    expect(errorOf(() => loadConfig({ file: list, env: {} })).message).toContain('must hold a mapping of sections');
  });
});

describe('clip.topFraction', () => {
  const load = (o: Record<string, unknown>) =>
    loadConfig({ env: {}, overrides: Object.entries(o).map(([path, value]) => ({ path, value, source: `--set ${path}` })) });
  const clip = { 'pipeline.stages': 'download,clip,write', 'models.clip': 'models/demo-clip' };

  it('takes a fraction in (0, 1] from a flag string, with the clip stage', () => {
    expect(load({ ...clip, 'clip.topFraction': '0.3' }).config.clip.topFraction).toBe(0.3);
    expect(load({ ...clip, 'clip.topFraction': '1' }).config.clip.topFraction).toBe(1);
    expect(loadConfig({ env: {} }).config.clip.topFraction).toBeNull();
  });

  it('refuses 0, more than 1, no clip stage, and saveEmbeddings beside it', () => {
    for (const bad of ['0', '1.5', '-0.3']) expect(errorOf(() => load({ ...clip, 'clip.topFraction': bad })).message).toContain('clip.topFraction');
    expect(errorOf(() => load({ 'clip.topFraction': '0.3' })).message).toContain('needs the clip stage');
    expect(errorOf(() => load({ ...clip, 'clip.topFraction': '0.3', 'clip.saveEmbeddings': 'true' })).message).toContain('clip.saveEmbeddings');
  });
});
