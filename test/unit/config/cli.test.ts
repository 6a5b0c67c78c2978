import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { COMMON_FLAGS, RUN_FLAGS, WORKER_FLAGS, addConfigFlags, loadFromFlags } from '../../../src/config/cli.ts';
import { leafPaths } from '../../../src/config/load.ts';
import { loadConfig } from '../../../src/config/load.ts';

function parse(argv: string[]) {
  const specs = [...RUN_FLAGS, ...WORKER_FLAGS, ...COMMON_FLAGS];
  let flags: Record<string, unknown> = {};
  const cmd = addConfigFlags(new Command('run').exitOverride(), specs).action((f: Record<string, unknown>) => {
    flags = f;
  });
  cmd.parse(argv, { from: 'user' });
  return loadFromFlags(flags, specs);
}

describe('config flags', () => {
  it('map onto config options, named after the flag in errors and sources', () => {
    const loaded = parse(['--input', 'in.csv', '--out', 'o', '--itm', '0.6', '--stages', 'download,filter,write', '--k', '3', '--keep-top', '2', '--trusted', '--set', 'caption.topP=0.95']);
    expect(loaded.config.input).toMatchObject({ path: 'in.csv', trusted: true });
    expect(loaded.config.filter.itmThreshold).toBe(0.6);
    expect(loaded.config.caption).toMatchObject({ k: 3, keepTop: 2, topP: 0.95 });
    expect(loaded.config.pipeline.stages).toEqual(['download', 'filter', 'write']);
    expect(loaded.sourceOf('filter.itmThreshold')).toBe('--itm');
    expect(loaded.sourceOf('caption.topP')).toBe('--set caption.topP');
    expect(() => parse(['--keep-top', '5'])).toThrow(/option caption.keepTop: expected at most caption.k \(1\), got 5 \(from --keep-top\)/);
  });

  it('every flag names an option that exists', () => {
    const known = new Set(leafPaths(loadConfig({ env: {} }).config as unknown as Record<string, unknown>));
    for (const s of [...RUN_FLAGS, ...WORKER_FLAGS, ...COMMON_FLAGS]) expect(known.has(s.path), s.flag).toBe(true);
  });
});
