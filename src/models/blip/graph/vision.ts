import type { BlipConfig } from '../config.ts';
import { GraphBuilder } from '../../runtime/graph/builder.ts';
import { classToken, patchEmbeddings, preLnLayer } from '../../runtime/graph/encoder.ts';
import { l2Normalize, layerNorm, linear, type LayerOptions, type WeightGetter } from '../../runtime/graph/layers.ts';

/**
 * BLIP vision encoder (BlipVisionModel): patch conv with bias, class token, position embedding,
 * pre-LN ViT layers with a fused qkv projection, post_layernorm on every token.
 *
 * Inputs:  pixel_values        float32 [batch, 3, S, S]
 * Outputs: last_hidden_state   float32 [batch, T, Hv]   T = (S/patch)² + 1, class token first
 *          image_feat          float32 [batch, D]       only with `projection` (filter): L2-normalised vision_proj(CLS)
 */
export const VISION_INPUTS = ['pixel_values'] as const;

export function buildVisionGraph(cfg: BlipConfig, w: WeightGetter, opts: LayerOptions & { projection: boolean }): GraphBuilder {
  const v = cfg.vision;
  const H = v.hiddenSize;
  const g = new GraphBuilder('blip_vision');
  const px = g.input('pixel_values', 'float32', ['batch', 3, v.imageSize, v.imageSize]);
  const p = 'vision_model';
  let x = patchEmbeddings(g, w, {
    patch: `${p}.embeddings.patch_embedding.weight`,
    patchBias: `${p}.embeddings.patch_embedding.bias`,
    classEmbedding: `${p}.embeddings.class_embedding`,
    positionEmbedding: `${p}.embeddings.position_embedding`,
  }, px, { hidden: H, patchSize: v.patchSize, seqLen: v.seqLen });
  for (let i = 0; i < v.layers; i++) {
    const l = `${p}.encoder.layers.${i}`;
    x = preLnLayer(g, w, {
      ln1: `${l}.layer_norm1`,
      ln2: `${l}.layer_norm2`,
      attention: { qkv: `${l}.self_attn.qkv` },
      out: `${l}.self_attn.projection`,
      fc1: `${l}.mlp.fc1`,
      fc2: `${l}.mlp.fc2`,
    }, x, { hidden: H, heads: v.heads, eps: v.eps, act: v.act }, opts);
  }
  const last = layerNorm(g, w, `${p}.post_layernorm`, x, v.eps);
  g.output(last, 'last_hidden_state', 'float32', ['batch', v.seqLen, H]);
  if (opts.projection) {
    g.output(l2Normalize(g, linear(g, w, 'vision_proj', classToken(g, last))), 'image_feat', 'float32', ['batch', cfg.projectionDim]);
  }
  return g;
}
