import { describe, expect, it } from 'vitest';
import { resolvePrecision, resolveSpinning, runtimeFromConfig } from '../../../../src/models/runtime/precision.ts';

describe('resolvePrecision', () => {
  it('auto: int8 for every role on the CPU; fp32 for every role on CUDA', () => {
    expect(['captioner', 'filter', 'embedder'].map((r) => resolvePrecision('cpu', 'auto', r as 'filter'))).toEqual(['int8', 'int8', 'int8']);
    expect(['captioner', 'filter', 'embedder'].map((r) => resolvePrecision('cuda:0', 'auto', r as 'filter'))).toEqual(['fp32', 'fp32', 'fp32']);
  });

  it('an explicit precision (the --precision fp32 opt-out) applies to every role', () => {
    const rt = runtimeFromConfig({ device: 'cpu', threads: 2, precision: 'fp32' });
    expect([rt('captioner'), rt('filter'), rt('embedder')]).toEqual(Array(3).fill({ device: 'cpu', threads: 2, precision: 'fp32' }));
    expect(runtimeFromConfig({ device: 'cpu', threads: 0, precision: 'int8' })('captioner').precision).toBe('int8');
  });
});

describe('resolveSpinning', () => {
  it('auto: threads spin only where one model runs; on and off are taken as said', () => {
    expect([0, 1, 2, 3].map((n) => resolveSpinning('auto', n))).toEqual([true, true, false, false]);
    expect([1, 3].map((n) => resolveSpinning('on', n))).toEqual([true, true]);
    expect([1, 3].map((n) => resolveSpinning('off', n))).toEqual([false, false]);
  });

  it('reaches every role\'s options when resolved, and is left to ORT when not', () => {
    const rt = runtimeFromConfig({ device: 'cpu', threads: 2, precision: 'auto', spinning: false });
    expect([rt('captioner'), rt('filter'), rt('embedder')].map((o) => o.spinning)).toEqual([false, false, false]);
    expect('spinning' in runtimeFromConfig({ device: 'cpu', threads: 2, precision: 'auto' })('filter')).toBe(false);
  });
});
