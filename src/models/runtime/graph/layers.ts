import { CapfiltError } from '../../../core/errors.ts';
import type { WeightTensor } from '../types.ts';
import type { AttrValue, GraphBuilder } from './builder.ts';

/**
 * Building blocks shared by every family's graphs. Weight initializers keep their HF state-dict names
 * (linear weights are stored transposed to [in, out] so MatMul reads them directly).
 */

/**
 * Activations the graphs implement, by their HF `hidden_act` names. `gelu` is the exact erf form
 * and the tanh forms are aliases; `quick_gelu` (x·σ(1.702x)) is what OpenAI's CLIP checkpoints use.
 */
export const SUPPORTED_ACTIVATIONS = ['gelu', 'gelu_new', 'gelu_pytorch_tanh', 'gelu_fast', 'quick_gelu', 'relu'] as const;
export type Activation = (typeof SUPPORTED_ACTIVATIONS)[number];

/** A config's `hidden_act`, or MODEL_UNSUPPORTED naming the file and field. */
export function parseActivation(value: string, file: string, field: string): Activation {
  if ((SUPPORTED_ACTIVATIONS as readonly string[]).includes(value)) return value as Activation;
  throw new CapfiltError('MODEL_UNSUPPORTED', `${file}: ${field} "${value}" is not supported (supported: ${SUPPORTED_ACTIVATIONS.join(', ')})`, { file, field, value });
}

export interface WeightGetter {
  get(name: string): WeightTensor;
}

/**
 * A view of `w` in which `${p}_prescaled.weight` and `.bias` are `${p}.weight` and `.bias` times
 * `factor`: a query projection that carries attention's 1/√D, for attention nodes given
 * `scale: 1`. ORT's CPU attention multiplies q·kᵀ by its scale inside the GEMM, and MLAS takes
 * its single-row (decode step) kernel only when that factor is 1; otherwise it packs every
 * key block first. For a power-of-4 head size (1/√D a power of 2) the products are bit-identical.
 */
export function prescaledQueries(w: WeightGetter, factor: number): WeightGetter {
  return {
    get(name: string): WeightTensor {
      const m = /^(.*)_prescaled\.(weight|bias)$/.exec(name);
      if (!m) return w.get(name);
      const t = w.get(`${m[1]}.${m[2]}`);
      return { ...t, data: t.data.map((v) => v * factor) };
    },
  };
}

export interface LayerOptions {
  /** Dynamic int8 quantisation of linear layers (MatMulIntegerToFloat via DynamicQuantizeMatMul). */
  int8?: boolean;
  /** Unmasked/padding-masked self-attention as one com.microsoft Attention node (fp32 only). */
  fusedAttention?: boolean;
  /**
   * With fusedAttention: causal + padding-masked self-attention (CLIP's text tower) as one
   * Attention node too (unidirectional=1, the raw padding mask as mask_index), for layers that
   * give their mask in that form (PreLnLayerSpec.fusedMask).
   */
  fusedMaskedAttention?: boolean;
  /**
   * With int8: self-attention as one com.microsoft QAttention node (activations quantised once
   * by DynamicQuantizeLinear, packed per-column int8 Q|K|V weights, softmax·v in float), masked
   * layers too where fusedMaskedAttention is set and the layer gives PreLnLayerSpec.fusedMask.
   */
  quantizedAttention?: boolean;
  /**
   * With int8: unmasked self-attention (vision towers) as one com.microsoft MultiHeadAttention
   * node over the int8 projections' Q, K, V [B, S, H], softmax·v in float: no head transposes
   * in the graph. Takes precedence over quantizedAttention for unmasked layers. Measured on the
   * base-size BLIP vision encoder at batch 8 (bench:models, vision_attention_variants.int8):
   * 1.28× the images/s of plain MatMul/Softmax attention, 1.11× QAttention's.
   */
  multiHeadAttention?: boolean;
}

export function transpose2d(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let c = 0; c < cols; c++) out[c * rows + r] = data[base + c];
  }
  return out;
}

/**
 * Symmetric per-output-column int8 quantisation of a [in, out] matrix, with 7-bit values
 * ([-63, 63], ORT's `reduce_range`): on x86 CPUs without VNNI, ORT's u8×s8 kernels add pairs of
 * products in saturating int16 (vpmaddubsw), and full-range weights overflow it — measured on an AVX2 EPYC: a tiny CLIP's
 * int8 embeddings fell to cosine 0.95 against fp32, 0.9999 with 7-bit weights.
 */
function quantizeColumns(wt: Float32Array, inDim: number, outDim: number): { q: Int8Array; scale: Float32Array } {
  const scale = new Float32Array(outDim);
  for (let r = 0; r < inDim; r++) {
    for (let c = 0; c < outDim; c++) scale[c] = Math.max(scale[c], Math.abs(wt[r * outDim + c]));
  }
  for (let c = 0; c < outDim; c++) scale[c] = scale[c] > 0 ? scale[c] / 63 : 1;
  const q = new Int8Array(inDim * outDim);
  for (let r = 0; r < inDim; r++) {
    for (let c = 0; c < outDim; c++) q[r * outDim + c] = Math.max(-63, Math.min(63, Math.round(wt[r * outDim + c] / scale[c])));
  }
  return { q, scale };
}

/** x @ W^T + b for an HF nn.Linear stored as `${prefix}.weight` [out, in] and `${prefix}.bias`. */
export function linear(g: GraphBuilder, w: WeightGetter, prefix: string, x: string, opts: LayerOptions = {}): string {
  return linearNamed(g, w, `${prefix}.weight`, `${prefix}.bias`, x, opts);
}

/** x @ W^T for a bias-free nn.Linear (CLIP's visual_projection / text_projection). */
export function linearNoBias(g: GraphBuilder, w: WeightGetter, prefix: string, x: string, opts: LayerOptions = {}): string {
  return linearNamed(g, w, `${prefix}.weight`, null, x, opts);
}

/** As `linear`, with the weight and bias names given separately (tied / aliased heads); `null` = no bias. */
export function linearNamed(g: GraphBuilder, w: WeightGetter, weightName: string, biasName: string | null, x: string, opts: LayerOptions = {}): string {
  if (opts.int8) {
    const qn = `${weightName}_int8`;
    const sn = `${weightName}_scale`;
    const zn = `${weightName}_zero_point`;
    if (!g.has(qn)) {
      const weight = w.get(weightName);
      const [outDim, inDim] = weight.shape;
      const { q, scale } = quantizeColumns(transpose2d(weight.data, outDim, inDim), inDim, outDim);
      g.weight(qn, q, [inDim, outDim], 'int8');
      g.weight(sn, scale, [outDim]);
      g.weight(zn, new Int8Array(outDim), [outDim], 'int8');
    }
    return g.o('DynamicQuantizeMatMul', biasName ? [x, qn, sn, zn, vector(g, w, biasName)] : [x, qn, sn, zn], {}, 'com.microsoft');
  }
  if (!g.has(weightName)) {
    const weight = w.get(weightName);
    const [outDim, inDim] = weight.shape;
    g.weight(weightName, transpose2d(weight.data, outDim, inDim), [inDim, outDim]);
  }
  const y = g.o('MatMul', [x, weightName]);
  return biasName ? g.o('Add', [y, vector(g, w, biasName)]) : y;
}

/**
 * The packed projections `parts` as int8 initializers under `base`, registered once: the weight
 * quantised per output column, its scales, zero points (symmetric: 0) and the float bias.
 */
function packedInt8Weights(g: GraphBuilder, w: WeightGetter, parts: string[], base: string): { qn: string; sn: string; zn: string; bName: string } {
  const names = { qn: `${base}.weight_int8`, sn: `${base}.weight_scale`, zn: `${base}.weight_zero_point`, bName: `${base}.bias` };
  if (!g.has(names.qn)) {
    const p = packProjections(w, parts);
    const { q, scale } = quantizeColumns(p.weight, p.inDim, p.outDim);
    g.weight(names.qn, q, [p.inDim, p.outDim], 'int8');
    g.weight(names.sn, scale, [p.outDim]);
    g.weight(names.zn, new Int8Array(p.outDim), [p.outDim], 'int8');
    g.weight(names.bName, p.bias, [p.outDim]);
  }
  return names;
}

/**
 * Several HF linears over the same input (`parts`, weights [out_k, in]) as one projection
 * [.., Σ out_k]: one weight read and one kernel instead of one per part (a decode step is
 * bound by reading weights and by per-kernel dispatch). int8 quantises the packed weight per
 * output column, so each column is the same as in the separate int8 projections.
 */
export function packedLinear(g: GraphBuilder, w: WeightGetter, parts: string[], x: string, opts: LayerOptions = {}): string {
  const base = parts[0].replace(/\.[^.]+$/, `.${parts.map((p) => p.slice(p.lastIndexOf('.') + 1)).join('_')}_packed`);
  const bName = `${base}.bias`;
  if (opts.int8) {
    const { qn, sn, zn } = packedInt8Weights(g, w, parts, base);
    return g.o('DynamicQuantizeMatMul', [x, qn, sn, zn, bName], {}, 'com.microsoft');
  }
  const wName = `${base}.weight`;
  if (!g.has(wName)) {
    const p = packProjections(w, parts);
    g.weight(wName, p.weight, [p.inDim, p.outDim]);
    g.weight(bName, p.bias, [p.outDim]);
  }
  return g.o('Add', [g.o('MatMul', [x, wName]), bName]);
}

/** A 1-D parameter (bias, LayerNorm scale) as an initializer, registered once. */
function vector(g: GraphBuilder, w: WeightGetter, name: string): string {
  if (g.has(name)) return name;
  const t = w.get(name);
  return g.weight(name, t.data, [t.data.length]);
}

export function layerNorm(g: GraphBuilder, w: WeightGetter, prefix: string, x: string, eps: number): string {
  return g.o('LayerNormalization', [x, vector(g, w, `${prefix}.weight`), vector(g, w, `${prefix}.bias`)], { axis: -1, epsilon: { float: eps } });
}

/** LN(x + residual) in one fused kernel (com.microsoft SkipLayerNormalization). */
export function skipLayerNorm(g: GraphBuilder, w: WeightGetter, prefix: string, x: string, residual: string, eps: number): string {
  return g.o('SkipLayerNormalization', [x, residual, vector(g, w, `${prefix}.weight`), vector(g, w, `${prefix}.bias`)], { epsilon: { float: eps } }, 'com.microsoft');
}

export function activation(g: GraphBuilder, x: string, act: Activation): string {
  switch (act) {
    case 'gelu':
      return g.o('Gelu', [x], {}, 'com.microsoft');
    case 'gelu_new':
    case 'gelu_pytorch_tanh':
    case 'gelu_fast':
      return g.o('FastGelu', [x], {}, 'com.microsoft');
    case 'quick_gelu':
      return g.o('Mul', [x, g.o('Sigmoid', [g.o('Mul', [x, g.f32(1.702)])])]);
    case 'relu':
      return g.o('Relu', [x]);
  }
}

/** [B, S, N·D] → [B, N, S, D]. */
export function splitHeads(g: GraphBuilder, x: string, heads: number, headDim: number): string {
  const r = g.o('Reshape', [x, g.i64([0, 0, heads, headDim])]);
  return g.o('Transpose', [r], { perm: [0, 2, 1, 3] });
}

/** [B, T, N·D] → [B, N, D, T]: keys laid out for q·kᵀ without a per-step transpose. */
export function splitHeadsTransposed(g: GraphBuilder, x: string, heads: number, headDim: number): string {
  const r = g.o('Reshape', [x, g.i64([0, 0, heads, headDim])]);
  return g.o('Transpose', [r], { perm: [0, 2, 3, 1] });
}

/** [B, N, S, D] → [B, S, N·D]. */
export function mergeHeads(g: GraphBuilder, x: string, hidden: number): string {
  const t = g.o('Transpose', [x], { perm: [0, 2, 1, 3] });
  return g.o('Reshape', [t, g.i64([0, 0, hidden])]);
}

/**
 * softmax(q·kᵀ·scale + mask)·v over [B, N, S, D] × [B, N, T, D]; mask broadcastable to
 * [B, N, S, T]. With `kTransposed`, k is already [B, N, D, T] (cached image keys).
 */
export function attend(g: GraphBuilder, q: string, k: string, v: string, headDim: number, mask?: string, kTransposed = false): string {
  const qs = g.o('Mul', [q, g.f32(1 / Math.sqrt(headDim))]);
  let scores = g.o('MatMul', [qs, kTransposed ? k : g.o('Transpose', [k], { perm: [0, 1, 3, 2] })]);
  if (mask) scores = g.o('Add', [scores, mask]);
  const probs = g.o('Softmax', [scores], { axis: -1 });
  return g.o('MatMul', [probs, v]);
}

/**
 * Self-attention (no cache) as one com.microsoft Attention node: packed Q|K|V projection
 * [in, 3H] + bias, softmax(q·kᵀ/√D) with ORT's -10000 mask filter (the value BERT/BLIP add;
 * `unidirectional` adds it again above the diagonal), heads merged: [B, S, in] → [B, S, H]. `parts` are the HF linear prefixes of Q, K, V, or one
 * fused prefix whose weight is [3H, in] (the vision tower's qkv).
 */
export function fusedSelfAttention(g: GraphBuilder, w: WeightGetter, parts: string[], x: string, heads: number, maskIndex?: string, unidirectional = false): string {
  const base = parts.length === 1 ? parts[0] : parts[0].replace(/\.[^.]+$/, '.qkv_packed');
  const wName = `${base}.weight`;
  const bName = `${base}.bias`;
  if (!g.has(wName)) {
    const p = packProjections(w, parts);
    g.weight(wName, p.weight, [p.inDim, p.outDim]);
    g.weight(bName, p.bias, [p.outDim]);
  }
  return g.o('Attention', maskIndex ? [x, wName, bName, maskIndex] : [x, wName, bName], attentionAttrs(heads, unidirectional), 'com.microsoft');
}

/**
 * Self-attention as one com.microsoft QAttention node, the int8 counterpart of
 * fusedSelfAttention: x quantised once (DynamicQuantizeLinear: uint8, per-tensor scale and
 * zero point, as DynamicQuantizeMatMul quantises it), the packed Q|K|V weight quantised per
 * output column (symmetric int8, the scales `linear` uses, so each column is the same as in
 * the separate int8 projections), the float bias, ORT's -10000 mask filter. [B, S, in] → [B, S, H].
 */
export function quantizedSelfAttention(g: GraphBuilder, w: WeightGetter, parts: string[], x: string, heads: number, maskIndex?: string, unidirectional = false): string {
  const base = parts.length === 1 ? parts[0] : parts[0].replace(/\.[^.]+$/, '.qkv_packed');
  const { qn, sn, zn, bName } = packedInt8Weights(g, w, parts, base);
  const [xq, xScale, xZero] = g.op('DynamicQuantizeLinear', [x], {}, { count: 3 });
  return g.o('QAttention', [xq, qn, bName, xScale, sn, maskIndex ?? '', xZero, zn], attentionAttrs(heads, unidirectional), 'com.microsoft');
}

function attentionAttrs(heads: number, unidirectional: boolean): Record<string, AttrValue> {
  return unidirectional ? { num_heads: heads, unidirectional: 1 } : { num_heads: heads };
}

/** HF linears `parts` (weights [out_k, in]) side by side: one transposed [in, Σ out_k] weight and the concatenated bias. */
function packProjections(w: WeightGetter, parts: string[]): { weight: Float32Array; bias: Float32Array; inDim: number; outDim: number } {
  const ws = parts.map((p) => w.get(`${p}.weight`));
  const outs = ws.map((t) => t.shape[0]);
  const inDim = ws[0].shape[1];
  const outDim = outs.reduce((a, b) => a + b, 0);
  const weight = new Float32Array(inDim * outDim);
  let col = 0;
  ws.forEach((t, k) => {
    const tt = transpose2d(t.data, outs[k], inDim);
    for (let r = 0; r < inDim; r++) weight.set(tt.subarray(r * outs[k], (r + 1) * outs[k]), r * outDim + col);
    col += outs[k];
  });
  const bias = new Float32Array(outDim);
  let off = 0;
  for (const p of parts) {
    const b = w.get(`${p}.bias`).data;
    bias.set(b, off);
    off += b.length;
  }
  return { weight, bias, inDim, outDim };
}

/** Additive mask `(1 - m) * -10000` as BERT/BLIP build it; `m` is float, broadcastable. */
export function additiveMask(g: GraphBuilder, m: string): string {
  return g.o('Mul', [g.o('Sub', [g.f32(1), m]), g.f32(-10000)]);
}

/** torch.nn.functional.normalize(x, dim=-1): x / max(‖x‖₂, 1e-12). */
export function l2Normalize(g: GraphBuilder, x: string): string {
  const n = g.o('ReduceL2', [x], { axes: [-1], keepdims: 1 });
  return g.o('Div', [x, g.o('Max', [n, g.f32(1e-12)])]);
}

/** Dimension `axis` of `x` as a 1-element int64 tensor. */
export function dim(g: GraphBuilder, x: string, axis: number): string {
  return g.o('Shape', [x], { start: axis, end: axis + 1 });
}
