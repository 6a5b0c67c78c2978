import onnxProto from 'onnx-proto';
import { describe, expect, it } from 'vitest';
import { spread } from '../../../../../bench/random-weights.ts';
import { GraphBuilder, graphDataBuffer } from '../../../../../src/models/runtime/graph/builder.ts';
import { preLnLayer, type PreLnLayerNames } from '../../../../../src/models/runtime/graph/encoder.ts';
import type { LayerOptions, WeightGetter } from '../../../../../src/models/runtime/graph/layers.ts';
import { GraphSession, f32 } from '../../../../../src/models/runtime/sessions.ts';
import type { WeightTensor } from '../../../../../src/models/runtime/types.ts';

const H = 48;
const HEADS = 4;
const S = 21;
const B = 3;

/** HF-shaped weights of one pre-LN layer, packed qkv (BLIP) or separate q/k/v (CLIP). */
function layerWeights(packed: boolean): { names: PreLnLayerNames; w: WeightGetter } {
  const shapes: Record<string, number[]> = {};
  const lin = (p: string, out: number, inp: number) => {
    shapes[`${p}.weight`] = [out, inp];
    shapes[`${p}.bias`] = [out];
  };
  for (const ln of ['ln1', 'ln2']) {
    shapes[`${ln}.weight`] = [H];
    shapes[`${ln}.bias`] = [H];
  }
  if (packed) lin('qkv', 3 * H, H);
  else for (const p of ['q', 'k', 'v']) lin(p, H, H);
  lin('out', H, H);
  lin('fc1', 4 * H, H);
  lin('fc2', H, 4 * H);
  const tensors = new Map<string, WeightTensor>();
  let seed = packed ? 11 : 12;
  for (const [name, shape] of Object.entries(shapes)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = name.startsWith('ln') && name.endsWith('.weight') ? spread(n, 0.2, seed++).map((v) => 1 + v) : spread(n, Math.sqrt(12 / shape[shape.length - 1]), seed++);
    tensors.set(name, { shape, data, sourceDtype: 'F32' });
  }
  return {
    names: { ln1: 'ln1', ln2: 'ln2', attention: packed ? { qkv: 'qkv' } : { q: 'q', k: 'k', v: 'v' }, out: 'out', fc1: 'fc1', fc2: 'fc2' },
    w: { get: (name) => tensors.get(name)! },
  };
}

async function runLayer(packed: boolean, opts: LayerOptions, x: Float32Array): Promise<{ y: Float32Array; ops: string[] }> {
  const { names, w } = layerWeights(packed);
  const g = new GraphBuilder('layer');
  const input = g.input('x', 'float32', ['batch', S, H]);
  g.output(preLnLayer(g, w, names, input, { hidden: H, heads: HEADS, eps: 1e-5, act: 'gelu' }, opts), 'y', 'float32', ['batch', S, H]);
  const built = g.build('layer.data');
  const ops = onnxProto.onnx.ModelProto.decode(built.model).graph!.node!.map((n) => n.opType!);
  const s = await GraphSession.create('layer', { model: built.model, dataFile: built.dataFile, data: graphDataBuffer(built) }, { device: 'cpu', threads: 1, precision: opts.int8 ? 'int8' : 'fp32' });
  const y = (await s.run({ x: f32(x, [B, S, H]) })).y.data as Float32Array;
  await s.release();
  return { y, ops };
}

const maxAbs = (a: Float32Array, b: Float32Array): number => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);

describe('preLnLayer attention variants', () => {
  it.each([true, false])('int8 MultiHeadAttention computes what plain int8 attention does (packed qkv: %s), without head transposes', async (packed) => {
    const x = spread(B * S * H, 4, 7);
    const plain = await runLayer(packed, { int8: true }, x);
    const mha = await runLayer(packed, { int8: true, multiHeadAttention: true, quantizedAttention: true }, x);
    const fp32 = await runLayer(packed, {}, x);
    expect(mha.ops).toContain('MultiHeadAttention');
    expect(mha.ops).not.toContain('QAttention');
    expect(mha.ops).not.toContain('Transpose');
    expect(plain.ops).toContain('Transpose');
    // Same int8 projections, attention in float either way: only summation order differs.
    expect(maxAbs(mha.y, plain.y)).toBeLessThan(1e-4);
    // And both are int8's distance from fp32, not more.
    const scale = fp32.y.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    expect(maxAbs(mha.y, fp32.y)).toBeLessThan(0.05 * scale);
    expect(maxAbs(mha.y, fp32.y)).toBeGreaterThan(0);
  });

  it('leaves masked layers to the other paths', async () => {
    const { names, w } = layerWeights(true);
    const g = new GraphBuilder('masked');
    const input = g.input('x', 'float32', ['batch', S, H]);
    const mask = g.input('mask', 'float32', ['batch', 1, S, S]);
    g.output(preLnLayer(g, w, names, input, { hidden: H, heads: HEADS, eps: 1e-5, act: 'gelu', mask }, { int8: true, multiHeadAttention: true }), 'y', 'float32', ['batch', S, H]);
    const ops = onnxProto.onnx.ModelProto.decode(g.build('m.data').model).graph!.node!.map((n) => n.opType!);
    expect(ops).not.toContain('MultiHeadAttention');
    expect(ops).toContain('Softmax');
  });
});
