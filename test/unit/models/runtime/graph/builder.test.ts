import onnxProto from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../../../../src/models/runtime/graph/builder.ts';
import { f32 } from '../../../../../src/models/runtime/sessions.ts';

describe('GraphBuilder.output', () => {
  it('renames a value with an Identity, and adds none for a value a node already produces under the output name', async () => {
    const g = new GraphBuilder('outputs');
    const x = g.input('x', 'float32', [2]);
    g.op('Add', [x, g.f32(1)], {}, { outputs: ['plus'] });
    g.output('plus', 'plus', 'float32', [2]);
    g.output(g.o('Mul', [x, g.f32(3)]), 'times', 'float32', [2]);
    const built = g.build('outputs.onnx.data');
    const nodes = onnxProto.onnx.ModelProto.decode(built.model).graph!.node!.map((n) => n.opType);
    expect(nodes.filter((t) => t === 'Identity')).toHaveLength(1);
    const s = await ort.InferenceSession.create(built.model);
    const out = await s.run({ x: f32(Float32Array.of(1, 2), [2]) });
    expect(Array.from(out.plus.data as Float32Array)).toEqual([2, 3]);
    expect(Array.from(out.times.data as Float32Array)).toEqual([3, 6]);
    await s.release();
  });

  it('gives fresh names that no other value has', () => {
    const g = new GraphBuilder('fresh');
    const a = g.fresh('q');
    const b = g.o('Relu', [g.input('x', 'float32', [1])]);
    expect(new Set([a, b, g.fresh('q')]).size).toBe(3);
  });
});
