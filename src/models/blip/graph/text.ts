import type { BlipConfig } from '../config.ts';
import { LM_HEAD } from '../weights/names.ts';
import { GraphBuilder } from '../../runtime/graph/builder.ts';
import { activation, additiveMask, attend, dim, fusedSelfAttention, l2Normalize, layerNorm, linear, linearNamed, mergeHeads, packedLinear, prescaledQueries, quantizedSelfAttention, skipLayerNorm, splitHeads, splitHeadsTransposed, type LayerOptions, type WeightGetter } from '../../runtime/graph/layers.ts';

/**
 * BLIP text graphs (BERT, post-LN, cross-attention to image embeddings).
 *
 * Rows and images: text rows are grouped by image — rows [g·G, (g+1)·G) belong to image g,
 * G = rows / images. Cross-attention has no mask, so each image's G·S queries read the image's
 * K/V as they are (the filter as one [G·S] block, the decoder one query row at a time, see
 * crossAttend); image K/V are never copied per row.
 *
 * cross_kv (captioner, once per image):
 *   in:  image_embeds  float32 [images, Tv, Hv]
 *   out: cross_key_{l}, cross_value_{l}  float32 [images, N, Tv, D]   l = 0..layers-1
 *
 * decoder (captioner, every step): hidden states stay [rows·seq, H] (2-D, so every linear is
 * one Gemm and every residual + LayerNorm one SkipLayerNormalization); self-attention is ORT's
 * MultiHeadAttention, cross-attention one-row products per query (crossAttend). The
 * self-attention cache has a fixed capacity `cap` that the caller fills in place
 * (decoder-session.ts): the graph joins it with the new tokens' K/V (a Concat inside ORT, in its
 * arena) under one mask and returns only this step's keys/values, so nothing that grows with the
 * length crosses between JS and ORT.
 * Not GroupQueryAttention, which can update a cache bound as both past and present in place:
 * onnxruntime-node copies every output into a fresh ArrayBuffer after each run, so a cache bound
 * as an output costs a copy of all of it per step (15 MB at base size, batch 8) and the garbage
 * collections that follow — slower in a side-by-side run than the Concat here.
 *   in:  input_ids       int64   [rows, seq]
 *        position_ids    int64   [rows, seq]          (past length + 0..seq-1)
 *        attention_mask  int64   [rows, cap + seq]    (1 = attend: the filled cache slots and
 *                                                      the new tokens; 0 = empty slot/padding)
 *        past_key_{l}, past_value_{l}    float32 [rows, N, cap, D]   (cap may be 0)
 *        cross_key_{l}, cross_value_{l}  float32 [images, N, Tv, D]
 *   out: logits          float32 [rows, seq, V]
 *        new_key_{l}, new_value_{l}  float32 [rows, seq, H]   (this step's K/V, heads side by side)
 *   Causality: query i sees cache slots (masked by attention_mask) and new tokens j ≤ i.
 *
 * text_filter (filter):
 *   in:  input_ids int64 [rows, seq], attention_mask int64 [rows, seq], image_embeds float32 [images, Tv, Hv]
 *   out: itm_logits float32 [rows, 2]; itm_cls float32 [rows, H] (ITM text CLS state);
 *        text_feat float32 [rows, D] (L2-normalised text_proj of the text-only CLS); itc_cls float32 [rows, H]
 */

interface TextDims {
  H: number;
  N: number;
  D: number;
}

function dims(cfg: BlipConfig): TextDims {
  const H = cfg.text.hiddenSize;
  const N = cfg.text.heads;
  return { H, N, D: H / N };
}

function embeddings(g: GraphBuilder, w: WeightGetter, prefix: string, ids: string, positions: string, eps: number): string {
  const table = (name: string): string => {
    const t = w.get(name);
    return g.weight(name, t.data, t.shape);
  };
  const words = g.o('Gather', [table(`${prefix}.embeddings.word_embeddings.weight`), ids], { axis: 0 });
  const pos = g.o('Gather', [table(`${prefix}.embeddings.position_embeddings.weight`), positions], { axis: 0 });
  return layerNorm(g, w, `${prefix}.embeddings.LayerNorm`, g.o('Add', [words, pos]), eps);
}

/** Cross-attention over grouped rows: q [rows, S, H], K [images, N, D, Tv], V [images, N, Tv, D] → [rows, S, H]. */
function groupedCrossAttend(g: GraphBuilder, q: string, k: string, v: string, d: TextDims): string {
  const grouped = g.o('Reshape', [q, g.o('Concat', [dim(g, k, 0), g.i64([-1, d.H])], { axis: 0 })]);
  const ctx = mergeHeads(g, attend(g, splitHeads(g, grouped, d.N, d.D), k, v, d.D, undefined, true), d.H);
  return g.o('Reshape', [ctx, g.o('Shape', [q])]);
}

function imageKV(g: GraphBuilder, w: WeightGetter, l: string, image: string, d: TextDims, opts: LayerOptions): [string, string] {
  return [
    splitHeadsTransposed(g, linear(g, w, `${l}.crossattention.self.key`, image, opts), d.N, d.D),
    splitHeads(g, linear(g, w, `${l}.crossattention.self.value`, image, opts), d.N, d.D),
  ];
}

interface LayerIO {
  x: string;
  mask: string;
  /** Raw 0/1 padding mask int32 [rows, seq] for the fused Attention / QAttention node (encoder only). */
  maskIndex?: string;
  cross?: [string, string];
}

/** One encoder BertLayer (the filter's text side; no cache); returns the new hidden state. */
function textLayer(g: GraphBuilder, w: WeightGetter, cfg: BlipConfig, l: string, io: LayerIO, opts: LayerOptions): { x: string } {
  const d = dims(cfg);
  const eps = cfg.text.eps;
  const { x } = io;
  let ctx: string;
  const qkv = ['query', 'key', 'value'].map((p) => `${l}.attention.self.${p}`);
  if (opts.fusedAttention && !opts.int8 && io.maskIndex) {
    ctx = fusedSelfAttention(g, w, qkv, x, d.N, io.maskIndex);
  } else if (opts.int8 && opts.quantizedAttention && io.maskIndex) {
    // One QAttention: x quantised once for the packed Q|K|V, heads split inside the node (the
    // head Transposes of the unfused path took 11% of the int8 text side).
    ctx = quantizedSelfAttention(g, w, qkv, x, d.N, io.maskIndex);
  } else {
    const [q, k, v] = qkv.map((p) => splitHeads(g, linear(g, w, p, x, opts), d.N, d.D));
    ctx = mergeHeads(g, attend(g, q, k, v, d.D, io.mask), d.H);
  }
  let h = layerNorm(g, w, `${l}.attention.output.LayerNorm`, g.o('Add', [linear(g, w, `${l}.attention.output.dense`, ctx, opts), x]), eps);
  if (io.cross) {
    const cq = linear(g, w, `${l}.crossattention.self.query`, h, opts);
    const cctx = groupedCrossAttend(g, cq, io.cross[0], io.cross[1], d);
    h = layerNorm(g, w, `${l}.crossattention.output.LayerNorm`, g.o('Add', [linear(g, w, `${l}.crossattention.output.dense`, cctx, opts), h]), eps);
  }
  const inter = activation(g, linear(g, w, `${l}.intermediate.dense`, h, opts), cfg.text.act);
  const out = layerNorm(g, w, `${l}.output.LayerNorm`, g.o('Add', [linear(g, w, `${l}.output.dense`, inter, opts), h]), eps);
  return { x: out };
}

export function buildCrossKVGraph(cfg: BlipConfig, w: WeightGetter, opts: LayerOptions = {}): GraphBuilder {
  const d = dims(cfg);
  const g = new GraphBuilder('blip_decoder_cross_kv');
  const image = g.input('image_embeds', 'float32', ['images', cfg.vision.seqLen, cfg.text.encoderHiddenSize]);
  for (let i = 0; i < cfg.text.layers; i++) {
    const l = `text_decoder.bert.encoder.layer.${i}`;
    const k = splitHeads(g, linear(g, w, `${l}.crossattention.self.key`, image, opts), d.N, d.D);
    const v = splitHeads(g, linear(g, w, `${l}.crossattention.self.value`, image, opts), d.N, d.D);
    g.output(k, `cross_key_${i}`, 'float32', ['images', d.N, cfg.vision.seqLen, d.D]);
    g.output(v, `cross_value_${i}`, 'float32', ['images', d.N, cfg.vision.seqLen, d.D]);
  }
  return g;
}

/**
 * Cross-attention of a step's queries q [rows·seq, H] (already scaled by 1/√D) to their image's
 * K/V [images, N, Tv, D]: [rows·seq, H] out, rows grouped by image (see the file comment).
 * Each query row is its own one-row product, q [images, N, G·seq, 1, D] against K and V
 * broadcast over the G·seq axis ([images, N, 1, Tv, D]): FusedMatMul (transB, alpha 1), Softmax,
 * MatMul. MLAS runs a one-row product with its single-row kernels, reading K and V in place;
 * MultiHeadAttention over an image's G·seq > 1 rows at once (beam search's three beams) packs
 * each K block first. The G·seq rows of a head read the same K/V one after another, so the
 * repeats come from cache. Side by side at base size, batch 8 (docs/performance.md): beam steps
 * 6–9% faster at fp32 and int8; greedy and nucleus unchanged or up to 3% faster.
 */
export function crossAttend(g: GraphBuilder, q: string, cross: [string, string], queryHeads: string): string {
  const heads = g.o('Transpose', [g.o('Reshape', [q, queryHeads])], { perm: [0, 2, 1, 3, 4] });
  const perRow = (t: string) => g.o('Unsqueeze', [t, g.i64([2])]);
  const scores = g.o('FusedMatMul', [heads, perRow(cross[0])], { transB: 1, alpha: { float: 1 } }, 'com.microsoft');
  const context = g.o('MatMul', [g.o('Softmax', [scores], { axis: -1 }), perRow(cross[1])]);
  return g.o('Transpose', [context], { perm: [0, 2, 1, 3, 4] });
}

/**
 * One decoder BertLayer over x [rows·seq, H]: self-attention over the cache and the new
 * tokens, cross-attention to the row's image (rows grouped by image, see the file comment),
 * FFN. Returns the new hidden state; this step's K/V [rows, seq, H] are produced under
 * `io.outputs` (the graph-output names).
 */
function decoderLayer(g: GraphBuilder, w: WeightGetter, cfg: BlipConfig, l: string, x: string, io: { outputs: [string, string]; rowsSeq3H: string; queryHeads: string; mask: string; past: [string, string]; cross: [string, string] }, opts: LayerOptions): string {
  const d = dims(cfg);
  const eps = cfg.text.eps;
  // The query projections carry 1/√D (`w` is prescaledQueries, see buildDecoderGraph).
  const mha = { num_heads: d.N, scale: { float: 1 } };
  const qkv = g.o('Reshape', [packedLinear(g, w, ['query_prescaled', 'key', 'value'].map((p) => `${l}.attention.self.${p}`), x, opts), io.rowsSeq3H]);
  // k and v leave the graph as they are split off (named as its outputs: no Identity).
  const [q, k, v] = g.op('Split', [qkv, g.i64([d.H, d.H, d.H])], { axis: 2 }, { outputs: [g.fresh('q'), ...io.outputs] });
  // One MultiHeadAttention over [cache slots | new tokens] (keys and values given per head,
  // [rows, N, cap + seq, D]); the additive mask hides empty slots and future tokens.
  const joined = (past: string, fresh: string) => g.o('Concat', [past, splitHeads(g, fresh, d.N, d.D)], { axis: 2 });
  const self = g.o('MultiHeadAttention', [q, joined(io.past[0], k), joined(io.past[1], v), '', '', io.mask], mha, 'com.microsoft');
  const flat = g.i64([-1, d.H]);
  let h = skipLayerNorm(g, w, `${l}.attention.output.LayerNorm`, linear(g, w, `${l}.attention.output.dense`, g.o('Reshape', [self, flat]), opts), x, eps);
  const cross = crossAttend(g, linear(g, w, `${l}.crossattention.self.query_prescaled`, h, opts), io.cross, io.queryHeads);
  h = skipLayerNorm(g, w, `${l}.crossattention.output.LayerNorm`, linear(g, w, `${l}.crossattention.output.dense`, g.o('Reshape', [cross, flat]), opts), h, eps);
  const inter = activation(g, linear(g, w, `${l}.intermediate.dense`, h, opts), cfg.text.act);
  return skipLayerNorm(g, w, `${l}.output.LayerNorm`, linear(g, w, `${l}.output.dense`, inter, opts), h, eps);
}

export function buildDecoderGraph(cfg: BlipConfig, weights: WeightGetter, opts: LayerOptions = {}): GraphBuilder {
  const d = dims(cfg);
  // Attention's 1/√D is folded into the query projections, so the self-attention node runs with
  // scale 1 and the cross-attention products with alpha 1: MLAS's single-row kernels take only
  // a factor of 1 (prescaledQueries).
  const w = prescaledQueries(weights, 1 / Math.sqrt(d.D));
  const t = cfg.text;
  const g = new GraphBuilder('blip_text_decoder');
  const ids = g.input('input_ids', 'int64', ['rows', 'seq']);
  const positions = g.input('position_ids', 'int64', ['rows', 'seq']);
  const mask = g.input('attention_mask', 'int64', ['rows', 'total']);
  const pasts: [string, string][] = [];
  const crosses: [string, string][] = [];
  for (let i = 0; i < t.layers; i++) {
    pasts.push([g.input(`past_key_${i}`, 'float32', ['rows', d.N, 'cap', d.D]), g.input(`past_value_${i}`, 'float32', ['rows', d.N, 'cap', d.D])]);
  }
  for (let i = 0; i < t.layers; i++) {
    crosses.push([g.input(`cross_key_${i}`, 'float32', ['images', d.N, cfg.vision.seqLen, d.D]), g.input(`cross_value_${i}`, 'float32', ['images', d.N, cfg.vision.seqLen, d.D])]);
  }
  const rowsSeq = g.o('Shape', [ids]);
  const rowsSeq3H = g.o('Concat', [rowsSeq, g.i64([3 * d.H])], { axis: 0 });
  // Cross-attention queries grouped per image and split into heads, [images, G·seq, N, 1, D].
  const queryHeads = g.o('Concat', [dim(g, crosses[0][0], 0), g.i64([-1, d.N, 1, d.D])], { axis: 0 });
  // Additive bias [rows, 1, seq, cap + seq]: slot j < cap is visible where the mask says so,
  // new token j − cap to query i where j − cap ≤ i and the mask says so.
  const cap = g.o('Squeeze', [dim(g, pasts[0][0], 2), g.i64([0])]);
  const seq = g.o('Squeeze', [dim(g, ids, 1), g.i64([0])]);
  const keyPos = g.o('Sub', [g.o('Range', [g.i64([0], []), g.o('Add', [cap, seq]), g.i64([1], [])]), cap]);
  const queryPos = g.o('Range', [g.i64([0], []), seq, g.i64([1], [])]);
  const causal = g.o('Cast', [g.o('LessOrEqual', [g.o('Unsqueeze', [keyPos, g.i64([0])]), g.o('Unsqueeze', [queryPos, g.i64([1])])])], { to: 1 });
  const keyMask = additiveMask(g, g.o('Mul', [causal, g.o('Unsqueeze', [g.o('Cast', [mask], { to: 1 }), g.i64([1, 2])])]));
  let x = g.o('Reshape', [embeddings(g, w, 'text_decoder.bert', ids, positions, t.eps), g.i64([-1, d.H])]);
  for (let i = 0; i < t.layers; i++) {
    const outputs: [string, string] = [`new_key_${i}`, `new_value_${i}`];
    x = decoderLayer(g, w, cfg, `text_decoder.bert.encoder.layer.${i}`, x, { outputs, rowsSeq3H, queryHeads, mask: keyMask, past: pasts[i], cross: crosses[i] }, opts);
    for (const name of outputs) g.output(name, name, 'float32', ['rows', 'seq', d.H]);
  }
  const tr = activation(g, linear(g, w, `${LM_HEAD.transform}.dense`, x, opts), t.act);
  const normed = layerNorm(g, w, `${LM_HEAD.transform}.LayerNorm`, tr, t.eps);
  // The LM head stays fp32 under int8: argmax decisions are the most quantisation-sensitive step.
  const logits = linearNamed(g, w, LM_HEAD.decoderWeight, LM_HEAD.bias, normed, { ...opts, int8: false });
  g.op('Reshape', [logits, g.o('Concat', [rowsSeq, g.i64([t.vocabSize])], { axis: 0 })], {}, { outputs: ['logits'] });
  g.output('logits', 'logits', 'float32', ['rows', 'seq', t.vocabSize]);
  return g;
}

export function buildFilterTextGraph(cfg: BlipConfig, w: WeightGetter, opts: LayerOptions = {}): GraphBuilder {
  const d = dims(cfg);
  const t = cfg.text;
  const g = new GraphBuilder('blip_text_filter');
  const ids = g.input('input_ids', 'int64', ['rows', 'seq']);
  const mask = g.input('attention_mask', 'int64', ['rows', 'seq']);
  const image = g.input('image_embeds', 'float32', ['images', cfg.vision.seqLen, t.encoderHiddenSize]);
  const positions = g.o('Range', [g.i64([0], []), g.o('Squeeze', [dim(g, ids, 1), g.i64([0])]), g.i64([1], [])]);
  const additive = additiveMask(g, g.o('Unsqueeze', [g.o('Cast', [mask], { to: 1 }), g.i64([1, 2])]));
  const maskIndex = g.o('Cast', [mask], { to: 6 });
  const emb = embeddings(g, w, 'text_encoder', ids, positions, t.eps);

  let itm = emb;
  let itc = emb;
  for (let i = 0; i < t.layers; i++) {
    const l = `text_encoder.encoder.layer.${i}`;
    itm = textLayer(g, w, cfg, l, { x: itm, mask: additive, maskIndex, cross: imageKV(g, w, l, image, d, opts) }, opts).x;
    itc = textLayer(g, w, cfg, l, { x: itc, mask: additive, maskIndex }, opts).x;
  }
  const first = g.i64([0], []);
  const itmCls = g.o('Gather', [itm, first], { axis: 1 });
  const itcCls = g.o('Gather', [itc, first], { axis: 1 });
  g.output(linear(g, w, 'itm_head', itmCls), 'itm_logits', 'float32', ['rows', 2]);
  g.output(itmCls, 'itm_cls', 'float32', ['rows', d.H]);
  g.output(l2Normalize(g, linear(g, w, 'text_proj', itcCls)), 'text_feat', 'float32', ['rows', cfg.projectionDim]);
  g.output(itcCls, 'itc_cls', 'float32', ['rows', d.H]);
  return g;
}
