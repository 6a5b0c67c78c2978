import { describe, expect, it } from 'vitest';
import { STAGE_TABLE, type StageTable } from '../../../src/pipeline/stages/table.ts';
import { modelsServed } from '../../../src/workers/stages.ts';

describe('modelsServed', () => {
  it('counts the distinct model roles of a host\'s stages', () => {
    expect(modelsServed(['download', 'caption', 'filter', 'write'])).toBe(2);
    expect(modelsServed(['download', 'caption', 'filter', 'clip', 'write'])).toBe(3);
    expect(modelsServed(['download', 'clip', 'write'])).toBe(1);
    expect(modelsServed(['download', 'write'])).toBe(0);
  });

  it('reads the roles from the table it is given', () => {
    const table: StageTable = STAGE_TABLE.map((s) => (s.name === 'filter' ? { ...s, role: 'captioner' as const } : s));
    expect(modelsServed(['caption', 'filter'], table)).toBe(1);
  });
});
