import { join } from 'node:path';
import onnxProto from 'onnx-proto';
import { afterAll, describe, expect, it } from 'vitest';
import { loadBlipConfig } from '../../../../../src/models/blip/config.ts';
import { buildDecoderGraph } from '../../../../../src/models/blip/graph/text.ts';
import { layerOptions } from '../../../../../src/models/blip/graphs.ts';
import { expectedWeights } from '../../../../../src/models/blip/weights/names.ts';
import { CheckedWeights, openWeightFolder } from '../../../../../src/models/runtime/weights/source.ts';

const dir = join(new URL('../../../../fixtures/parity/t1/', import.meta.url).pathname, 'captioner');
const cfg = loadBlipConfig(dir);
const weights = new CheckedWeights(openWeightFolder(dir), expectedWeights(cfg));
afterAll(() => weights.close());

function decoderNodes(precision: 'fp32' | 'int8') {
  const model = onnxProto.onnx.ModelProto.decode(buildDecoderGraph(cfg, weights, layerOptions(precision)).build('decoder.onnx.data').model);
  const ops = new Map<string, number>();
  for (const n of model.graph!.node!) ops.set(n.opType!, (ops.get(n.opType!) ?? 0) + 1);
  return { ops, outputs: model.graph!.output!.map((o) => o.name!), nodes: model.graph!.node! };
}

// Numerics are checked by decoder-session.test.ts and `npm run parity`; this pins the graph's
// shape for a cached step, whose kernel count is most of what a step costs beyond its bytes.
describe('BLIP decoder graph', () => {
  for (const precision of ['fp32', 'int8'] as const) {
    it(`${precision}: self- and cross-attention are one MultiHeadAttention each per layer, and no Identity renames an output`, () => {
      const { ops, outputs, nodes } = decoderNodes(precision);
      const L = cfg.text.layers;
      expect(ops.get('MultiHeadAttention')).toBe(2 * L);
      expect(ops.get('Softmax') ?? 0).toBe(0);
      expect(ops.get('Identity') ?? 0).toBe(0);
      expect([...outputs].sort()).toEqual(['logits', ...Array.from({ length: L }, (_, l) => [`new_key_${l}`, `new_value_${l}`]).flat()].sort());
      // Each layer's self-attention reads the cache input it was given, joined with the new K/V.
      for (let l = 0; l < L; l++) {
        const join = nodes.filter((n) => n.opType === 'Concat' && n.input![0] === `past_key_${l}`);
        expect(join).toHaveLength(1);
      }
    });
  }
});
