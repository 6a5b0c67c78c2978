import { GraphBuilder, type BuiltGraph } from '../runtime/graph/builder.ts';
import { classToken, fusesMaskedAttention, patchEmbeddings, preLnLayer } from '../runtime/graph/encoder.ts';
import { dim, l2Normalize, layerNorm, linearNoBias, type LayerOptions, type WeightGetter } from '../runtime/graph/layers.ts';
import type { ClipConfig } from './config.ts';
import { TEXT, VISION, layerNames } from './names.ts';

/**
 * CLIP's two towers as two graphs, so that embedding a million images never runs the text tower
 * and the reverse (modeling_clip.py: CLIPVisionTransformer, CLIPTextTransformer, the projections).
 *
 * vision   In:  pixel_values               float32 [batch, 3, S, S]
 *          Out: image_embeds               float32 [batch, P]      L2-normalised visual_projection(pooler_output)
 *               image_embeds_unnormalized  float32 [batch, P]
 *               pooler_output              float32 [batch, Hv]     post_layernorm(last_hidden_state[:, 0])
 *               last_hidden_state          float32 [batch, T, Hv]  after pre_layrnorm + layers, before post_layernorm
 *
 * text     In:  input_ids                  int64   [batch, seq]    seq ≤ max_position_embeddings
 *               attention_mask             int64   [batch, seq]    1 = token, 0 = padding
 *          Out: text_embeds                float32 [batch, P]      L2-normalised text_projection(pooler_output)
 *               text_embeds_unnormalized   float32 [batch, P]
 *               pooler_output              float32 [batch, Ht]     last_hidden_state at pool_index
 *               pool_index                 int64   [batch]         HF's end-of-text position (see ClipConfig.text.pooling)
 *               last_hidden_state          float32 [batch, seq, Ht] after final_layer_norm
 *
 * Callers fetch only the outputs they need (the embeddings); the rest are for parity and debugging.
 */

export const CLIP_GRAPHS = ['vision', 'text'] as const;
export type ClipGraphName = (typeof CLIP_GRAPHS)[number];

/** float32's lowest value, the additive mask modeling_clip uses (torch.finfo(float32).min). */
const MASKED = -3.4028234663852886e38;

export function buildClipVisionGraph(cfg: ClipConfig, w: WeightGetter, opts: LayerOptions): GraphBuilder {
  const v = cfg.vision;
  const H = v.hiddenSize;
  const g = new GraphBuilder('clip_vision');
  const px = g.input('pixel_values', 'float32', ['batch', 3, v.imageSize, v.imageSize]);
  const emb = patchEmbeddings(g, w, {
    patch: `${VISION}.embeddings.patch_embedding.weight`,
    classEmbedding: `${VISION}.embeddings.class_embedding`,
    positionEmbedding: `${VISION}.embeddings.position_embedding.weight`,
  }, px, { hidden: H, patchSize: v.patchSize, seqLen: v.seqLen });
  let x = layerNorm(g, w, `${VISION}.pre_layrnorm`, emb, v.eps);
  for (let i = 0; i < v.layers; i++) x = preLnLayer(g, w, layerNames(VISION, i), x, { hidden: H, heads: v.heads, eps: v.eps, act: v.act }, opts);
  const pooled = layerNorm(g, w, `${VISION}.post_layernorm`, classToken(g, x), v.eps);
  const projected = linearNoBias(g, w, 'visual_projection', pooled, opts);
  g.output(l2Normalize(g, projected), 'image_embeds', 'float32', ['batch', cfg.projectionDim]);
  g.output(projected, 'image_embeds_unnormalized', 'float32', ['batch', cfg.projectionDim]);
  g.output(pooled, 'pooler_output', 'float32', ['batch', H]);
  g.output(x, 'last_hidden_state', 'float32', ['batch', v.seqLen, H]);
  return g;
}

/**
 * Causal mask plus padding mask, additive, [batch, 1, seq, seq]: query i may attend key j when
 * j ≤ i and key j is a token. Built once and shared by every layer, for the plain attention
 * path only: the fused (Q)Attention nodes take causal (unidirectional) plus the raw padding mask
 * and mask with ORT's -10000 filter instead of float32's lowest value. The weights
 * of masked keys are exactly 0 either way (exp underflows), and a row whose keys are all padding
 * (an all-zero attention_mask) is uniform over its causal keys in both.
 */
function causalPaddingMask(g: GraphBuilder, ids: string, attentionMask: string): string {
  const seq = g.o('Squeeze', [dim(g, ids, 1), g.i64([0])]);
  const pos = g.o('Range', [g.i64([0], []), seq, g.i64([1], [])]);
  const causal = g.o('LessOrEqual', [g.o('Unsqueeze', [pos, g.i64([0])]), g.o('Unsqueeze', [pos, g.i64([1])])]);
  const keep = g.o('Unsqueeze', [g.o('Cast', [attentionMask], { to: 9 }), g.i64([1, 2])]);
  return g.o('Where', [g.o('And', [causal, keep]), g.f32(0), g.f32(MASKED)]);
}

function poolIndex(g: GraphBuilder, ids: string, cfg: ClipConfig): string {
  if (cfg.text.pooling === 'argmax') return g.o('ArgMax', [ids], { axis: -1, keepdims: 0 });
  // (ids == eos).int().argmax(-1): the first end-of-text position (0 where a row has none, as in HF).
  const isEos = g.o('Cast', [g.o('Equal', [ids, g.i64([cfg.text.eosId], [])])], { to: 6 });
  return g.o('ArgMax', [isEos], { axis: -1, keepdims: 0 });
}

export function buildClipTextGraph(cfg: ClipConfig, w: WeightGetter, opts: LayerOptions): GraphBuilder {
  const t = cfg.text;
  const H = t.hiddenSize;
  const g = new GraphBuilder('clip_text');
  const ids = g.input('input_ids', 'int64', ['batch', 'seq']);
  const am = g.input('attention_mask', 'int64', ['batch', 'seq']);
  const tokW = w.get(`${TEXT}.embeddings.token_embedding.weight`);
  const posW = w.get(`${TEXT}.embeddings.position_embedding.weight`);
  const tok = g.o('Gather', [g.weight(`${TEXT}.embeddings.token_embedding.weight`, tokW.data, tokW.shape), ids], { axis: 0 });
  const pos = g.o('Slice', [g.weight(`${TEXT}.embeddings.position_embedding.weight`, posW.data, posW.shape), g.i64([0]), dim(g, ids, 1), g.i64([0])]);
  let x = g.o('Add', [tok, pos]);
  // One mask for every layer: for fused (Q)Attention nodes causal (unidirectional) plus the raw
  // padding mask as int32 mask_index; for plain attention the additive [batch, 1, seq, seq] one.
  const masks = fusesMaskedAttention(opts)
    ? { fusedMask: { maskIndex: g.o('Cast', [am], { to: 6 }), unidirectional: true } }
    : { mask: causalPaddingMask(g, ids, am) };
  for (let i = 0; i < t.layers; i++) x = preLnLayer(g, w, layerNames(TEXT, i), x, { hidden: H, heads: t.heads, eps: t.eps, act: t.act, ...masks }, opts);
  const last = layerNorm(g, w, `${TEXT}.final_layer_norm`, x, t.eps);
  const index = poolIndex(g, ids, cfg);
  const pooled = g.o('GatherND', [last, g.o('Unsqueeze', [index, g.i64([1])])], { batch_dims: 1 });
  const projected = linearNoBias(g, w, 'text_projection', pooled, opts);
  g.output(l2Normalize(g, projected), 'text_embeds', 'float32', ['batch', cfg.projectionDim]);
  g.output(projected, 'text_embeds_unnormalized', 'float32', ['batch', cfg.projectionDim]);
  g.output(pooled, 'pooler_output', 'float32', ['batch', H]);
  g.output(index, 'pool_index', 'int64', ['batch']);
  g.output(last, 'last_hidden_state', 'float32', ['batch', 'seq', H]);
  return g;
}

const BUILDERS: Record<ClipGraphName, (cfg: ClipConfig, w: WeightGetter, opts: LayerOptions) => GraphBuilder> = {
  vision: buildClipVisionGraph,
  text: buildClipTextGraph,
};

/** Builds the requested towers one at a time, so only one graph's weights are held at once. */
export function* buildClipGraphs(cfg: ClipConfig, w: WeightGetter, opts: LayerOptions, names: readonly ClipGraphName[] = CLIP_GRAPHS): Generator<[ClipGraphName, BuiltGraph]> {
  for (const name of names) yield [name, BUILDERS[name](cfg, w, opts).build(`${name}.onnx.data`)];
}
