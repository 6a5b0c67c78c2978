import type { BlipConfig } from '../config.ts';
import { LM_HEAD } from '../weights/names.ts';
import { GraphBuilder } from '../../runtime/graph/builder.ts';
import { activation, additiveMask, attend, dim, fusedSelfAttention, l2Normalize, layerNorm, linear, linearNamed, mergeHeads, splitHeads, splitHeadsTransposed, type LayerOptions, type WeightGetter } from '../../runtime/graph/layers.ts';

/**
 * BLIP text graphs (BERT, post-LN, cross-attention to image embeddings).
 *
 * Rows and images: text rows are grouped by image — rows [g·G, (g+1)·G) belong to image g,
 * G = rows / images. Cross-attention has no mask, so each image's G·S queries attend to its
 * keys as one [1, G·S] block; image K/V are never copied per row.
 *
 * cross_kv (captioner, once per image):
 *   in:  image_embeds  float32 [images, Tv, Hv]
 *   out: cross_key_{l}    float32 [images, N, D, Tv]   (keys pre-transposed for q·kᵀ)
 *        cross_value_{l}  float32 [images, N, Tv, D]   l = 0..layers-1
 *
 * decoder (captioner, every step):
 *   in:  input_ids       int64   [rows, seq]
 *        attention_mask  int64   [rows, past + seq]   (1 = token, 0 = padding)
 *        past_key_{l}, past_value_{l}    float32 [rows, N, past, D]   (past may be 0)
 *        cross_key_{l} [images, N, D, Tv], cross_value_{l} [images, N, Tv, D]  float32
 *   out: logits          float32 [rows, seq, V]   positions start at `past`
 *        present_key_{l}, present_value_{l}  float32 [rows, N, past + seq, D]
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
  /** Raw 0/1 padding mask int32 [rows, seq] for the fused Attention node (encoder only). */
  maskIndex?: string;
  past?: [string, string];
  cross?: [string, string];
}

/** One BertLayer; returns the new hidden state and this step's self-attention K/V. */
function textLayer(g: GraphBuilder, w: WeightGetter, cfg: BlipConfig, l: string, io: LayerIO, opts: LayerOptions): { x: string; k: string; v: string } {
  const d = dims(cfg);
  const eps = cfg.text.eps;
  const { x } = io;
  let ctx: string;
  let k = '';
  let v = '';
  if (opts.fusedAttention && !opts.int8 && !io.past && io.maskIndex) {
    ctx = fusedSelfAttention(g, w, ['query', 'key', 'value'].map((p) => `${l}.attention.self.${p}`), x, d.N, io.maskIndex);
  } else {
    const q = splitHeads(g, linear(g, w, `${l}.attention.self.query`, x, opts), d.N, d.D);
    k = splitHeads(g, linear(g, w, `${l}.attention.self.key`, x, opts), d.N, d.D);
    v = splitHeads(g, linear(g, w, `${l}.attention.self.value`, x, opts), d.N, d.D);
    if (io.past) {
      k = g.o('Concat', [io.past[0], k], { axis: 2 });
      v = g.o('Concat', [io.past[1], v], { axis: 2 });
    }
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
  return { x: out, k, v };
}

export function buildCrossKVGraph(cfg: BlipConfig, w: WeightGetter, opts: LayerOptions = {}): GraphBuilder {
  const d = dims(cfg);
  const g = new GraphBuilder('blip_decoder_cross_kv');
  const image = g.input('image_embeds', 'float32', ['images', cfg.vision.seqLen, cfg.text.encoderHiddenSize]);
  for (let i = 0; i < cfg.text.layers; i++) {
    const [k, v] = imageKV(g, w, `text_decoder.bert.encoder.layer.${i}`, image, d, opts);
    g.output(k, `cross_key_${i}`, 'float32', ['images', d.N, d.D, cfg.vision.seqLen]);
    g.output(v, `cross_value_${i}`, 'float32', ['images', d.N, cfg.vision.seqLen, d.D]);
  }
  return g;
}

export function buildDecoderGraph(cfg: BlipConfig, w: WeightGetter, opts: LayerOptions = {}): GraphBuilder {
  const d = dims(cfg);
  const t = cfg.text;
  const g = new GraphBuilder('blip_text_decoder');
  const ids = g.input('input_ids', 'int64', ['rows', 'seq']);
  const mask = g.input('attention_mask', 'int64', ['rows', 'total']);
  const pasts: [string, string][] = [];
  const crosses: [string, string][] = [];
  for (let i = 0; i < t.layers; i++) {
    pasts.push([g.input(`past_key_${i}`, 'float32', ['rows', d.N, 'past', d.D]), g.input(`past_value_${i}`, 'float32', ['rows', d.N, 'past', d.D])]);
  }
  for (let i = 0; i < t.layers; i++) {
    crosses.push([g.input(`cross_key_${i}`, 'float32', ['images', d.N, d.D, cfg.vision.seqLen]), g.input(`cross_value_${i}`, 'float32', ['images', d.N, cfg.vision.seqLen, d.D])]);
  }
  // Positions continue after the cache: [past, past + seq).
  const past = g.o('Squeeze', [dim(g, pasts[0][0], 2), g.i64([0])]);
  const seq = g.o('Squeeze', [dim(g, ids, 1), g.i64([0])]);
  const total = g.o('Add', [past, seq]);
  const positions = g.o('Range', [past, total, g.i64([1], [])]);
  const keyPositions = g.o('Range', [g.i64([0], []), total, g.i64([1], [])]);
  const causal = g.o('Cast', [g.o('LessOrEqual', [g.o('Unsqueeze', [keyPositions, g.i64([0])]), g.o('Unsqueeze', [positions, g.i64([1])])])], { to: 1 });
  const pad = g.o('Unsqueeze', [g.o('Cast', [mask], { to: 1 }), g.i64([1, 2])]);
  const additive = additiveMask(g, g.o('Mul', [causal, pad]));

  let x = embeddings(g, w, 'text_decoder.bert', ids, positions, t.eps);
  for (let i = 0; i < t.layers; i++) {
    const r = textLayer(g, w, cfg, `text_decoder.bert.encoder.layer.${i}`, { x, mask: additive, past: pasts[i], cross: crosses[i] }, opts);
    x = r.x;
    g.output(r.k, `present_key_${i}`, 'float32', ['rows', d.N, 'total', d.D]);
    g.output(r.v, `present_value_${i}`, 'float32', ['rows', d.N, 'total', d.D]);
  }
  const tr = activation(g, linear(g, w, `${LM_HEAD.transform}.dense`, x, opts), t.act);
  const normed = layerNorm(g, w, `${LM_HEAD.transform}.LayerNorm`, tr, t.eps);
  // The LM head stays fp32 under int8: argmax decisions are the most quantisation-sensitive step.
  const logits = linearNamed(g, w, LM_HEAD.decoderWeight, LM_HEAD.bias, normed, { ...opts, int8: false });
  g.output(logits, 'logits', 'float32', ['rows', 'seq', t.vocabSize]);
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
