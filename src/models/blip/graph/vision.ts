import type { BlipConfig } from '../config.ts';
import { GraphBuilder } from '../../runtime/graph/builder.ts';
import { activation, attend, dim, fusedSelfAttention, l2Normalize, layerNorm, linear, mergeHeads, type LayerOptions, type WeightGetter } from '../../runtime/graph/layers.ts';

/**
 * BLIP vision encoder (BlipVisionModel): patch conv, class token, position embedding, pre-LN
 * ViT blocks with fused qkv, post_layernorm.
 *
 * Inputs:  pixel_values        float32 [batch, 3, S, S]
 * Outputs: last_hidden_state   float32 [batch, T, Hv]   T = (S/patch)² + 1, class token first
 *          image_feat          float32 [batch, D]       only with `projection` (filter): L2-normalised vision_proj(CLS)
 */
export const VISION_INPUTS = ['pixel_values'] as const;

export function buildVisionGraph(cfg: BlipConfig, w: WeightGetter, opts: LayerOptions & { projection: boolean }): GraphBuilder {
  const v = cfg.vision;
  const H = v.hiddenSize;
  const N = v.heads;
  const D = H / N;
  const g = new GraphBuilder('blip_vision');
  const px = g.input('pixel_values', 'float32', ['batch', 3, v.imageSize, v.imageSize]);
  const p = 'vision_model';

  const pw = w.get(`${p}.embeddings.patch_embedding.weight`);
  const pb = w.get(`${p}.embeddings.patch_embedding.bias`);
  const conv = g.o('Conv', [px, g.weight(`${p}.embeddings.patch_embedding.weight`, pw.data, pw.shape), g.weight(`${p}.embeddings.patch_embedding.bias`, pb.data, pb.shape)], {
    kernel_shape: [v.patchSize, v.patchSize],
    strides: [v.patchSize, v.patchSize],
  });
  const patches = g.o('Transpose', [g.o('Reshape', [conv, g.i64([0, H, -1])])], { perm: [0, 2, 1] });
  const cls = w.get(`${p}.embeddings.class_embedding`);
  const clsRow = g.weight(`${p}.embeddings.class_embedding`, cls.data, [1, 1, H]);
  const clsB = g.o('Expand', [clsRow, g.o('Concat', [dim(g, px, 0), g.i64([1, H])], { axis: 0 })]);
  const pos = w.get(`${p}.embeddings.position_embedding`);
  let x = g.o('Add', [g.o('Concat', [clsB, patches], { axis: 1 }), g.weight(`${p}.embeddings.position_embedding`, pos.data, [1, v.seqLen, H])]);

  for (let i = 0; i < v.layers; i++) {
    const l = `${p}.encoder.layers.${i}`;
    const h = layerNorm(g, w, `${l}.layer_norm1`, x, v.eps);
    let ctx: string;
    if (opts.fusedAttention && !opts.int8) {
      ctx = fusedSelfAttention(g, w, [`${l}.self_attn.qkv`], h, N);
    } else {
      const qkv = linear(g, w, `${l}.self_attn.qkv`, h, opts);
      const heads = g.o('Transpose', [g.o('Reshape', [qkv, g.i64([0, 0, 3, N, D])])], { perm: [2, 0, 3, 1, 4] });
      const [q, k, vv] = g.op('Split', [heads], { axis: 0 }, { count: 3 }).map((t) => g.o('Squeeze', [t, g.i64([0])]));
      ctx = mergeHeads(g, attend(g, q, k, vv, D), H);
    }
    x = g.o('Add', [x, linear(g, w, `${l}.self_attn.projection`, ctx, opts)]);
    const h2 = layerNorm(g, w, `${l}.layer_norm2`, x, v.eps);
    x = g.o('Add', [x, linear(g, w, `${l}.mlp.fc2`, activation(g, linear(g, w, `${l}.mlp.fc1`, h2, opts), v.act), opts)]);
  }
  const last = layerNorm(g, w, `${p}.post_layernorm`, x, v.eps);
  g.output(last, 'last_hidden_state', 'float32', ['batch', v.seqLen, H]);
  if (opts.projection) {
    const clsOut = g.o('Gather', [last, g.i64([0], [])], { axis: 1 });
    g.output(l2Normalize(g, linear(g, w, 'vision_proj', clsOut)), 'image_feat', 'float32', ['batch', cfg.projectionDim]);
  }
  return g;
}
