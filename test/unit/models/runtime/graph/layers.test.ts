import { describe, expect, it } from 'vitest';
import { prescaledQueries, type WeightGetter } from '../../../../../src/models/runtime/graph/layers.ts';
import type { WeightTensor } from '../../../../../src/models/runtime/types.ts';

const tensors: Record<string, WeightTensor> = {
  'l.query.weight': { shape: [2, 2], data: Float32Array.from([1, -2, 3, 0.5]), sourceDtype: 'F32' },
  'l.query.bias': { shape: [2], data: Float32Array.from([4, -8]), sourceDtype: 'F32' },
  'l.key.weight': { shape: [2, 2], data: Float32Array.from([5, 6, 7, 8]), sourceDtype: 'F32' },
};
const source: WeightGetter = {
  get(name) {
    const t = tensors[name];
    if (!t) throw new Error(`no ${name}`);
    return t;
  },
};

describe('prescaledQueries', () => {
  const w = prescaledQueries(source, 0.125);

  it('scales the weight and bias behind a _prescaled name and leaves the source untouched', () => {
    expect([...w.get('l.query_prescaled.weight').data]).toEqual([0.125, -0.25, 0.375, 0.0625]);
    expect([...w.get('l.query_prescaled.bias').data]).toEqual([0.5, -1]);
    expect(w.get('l.query_prescaled.weight').shape).toEqual([2, 2]);
    expect([...tensors['l.query.weight'].data]).toEqual([1, -2, 3, 0.5]);
  });

  it('passes every other name through, and a missing source name still fails', () => {
    expect(w.get('l.key.weight')).toBe(tensors['l.key.weight']);
    expect(() => w.get('l.value_prescaled.weight')).toThrow('no l.value.weight');
  });
});
