import type { GraphBuilder } from './builder.ts';
import { activation, attend, dim, fusedSelfAttention, quantizedSelfAttention, layerNorm, linear, mergeHeads, splitHeads, type Activation, type LayerOptions, type WeightGetter } from './layers.ts';

/**
 * The pre-LN transformer layer and the ViT patch embeddings, written once for every family:
 * BLIP's vision tower, CLIP's vision tower and CLIP's text tower are all
 *   x += out(attn(LN1(x)));  x += fc2(act(fc1(LN2(x))))
 * and differ only in weight names (fused `qkv` vs separate q/k/v), activation and mask. Weight
 * names are the HF state-dict names the family passes in.
 */

/** HF names of one pre-LN layer's parameters (prefixes of nn.Linear / nn.LayerNorm). */
export interface PreLnLayerNames {
  ln1: string;
  ln2: string;
  /** One fused [3H, H] projection (BLIP's `self_attn.qkv`) or separate q, k, v (CLIP). */
  attention: { qkv: string } | { q: string; k: string; v: string };
  out: string;
  fc1: string;
  fc2: string;
}

export interface PreLnLayerSpec {
  hidden: number;
  heads: number;
  eps: number;
  act: Activation;
  /**
   * Additive attention mask broadcastable to [B, heads, S, S] (causal and/or padding), or none,
   * for the unfused path. The fused com.microsoft Attention (fp32) / QAttention (int8) paths
   * are used for unmasked layers, and for masked ones when `fusedMask` is given and the options
   * ask for fusedMaskedAttention.
   */
  mask?: string;
  /**
   * The same mask in com.microsoft Attention's terms: a raw 0/1 int32 key mask [B, S] and/or
   * causal. A layer may give only this one when `fusesMaskedAttention(opts)` holds.
   */
  fusedMask?: { maskIndex?: string; unidirectional: boolean };
}

/** Whether preLnLayer builds a masked layer that gives `fusedMask` as one (Q)Attention node. */
export function fusesMaskedAttention(opts: LayerOptions): boolean {
  return Boolean(opts.fusedMaskedAttention && ((opts.fusedAttention && !opts.int8) || (opts.int8 && opts.quantizedAttention)));
}

/** One pre-LN encoder layer: [B, S, H] → [B, S, H]. */
export function preLnLayer(g: GraphBuilder, w: WeightGetter, names: PreLnLayerNames, x: string, spec: PreLnLayerSpec, opts: LayerOptions): string {
  const H = spec.hidden;
  const N = spec.heads;
  const D = H / N;
  const h = layerNorm(g, w, names.ln1, x, spec.eps);
  const a = names.attention;
  let ctx: string;
  const masked = Boolean(spec.mask || spec.fusedMask);
  const parts = 'qkv' in a ? [a.qkv] : [a.q, a.k, a.v];
  const fusable = !masked || (fusesMaskedAttention(opts) && spec.fusedMask);
  if (opts.int8 && opts.multiHeadAttention && !masked) {
    // Q, K, V [B, S, H] straight from the int8 projections; the node splits the heads itself.
    const [q, k, v] = 'qkv' in a
      ? g.op('Split', [linear(g, w, a.qkv, h, opts)], { axis: 2 }, { count: 3 })
      : [a.q, a.k, a.v].map((p) => linear(g, w, p, h, opts));
    ctx = g.o('MultiHeadAttention', [q, k, v], { num_heads: N }, 'com.microsoft');
  } else if (opts.int8 && opts.quantizedAttention && fusable) {
    ctx = quantizedSelfAttention(g, w, parts, h, N, spec.fusedMask?.maskIndex, spec.fusedMask?.unidirectional ?? false);
  } else if (opts.fusedAttention && !opts.int8 && fusable) {
    ctx = fusedSelfAttention(g, w, parts, h, N, spec.fusedMask?.maskIndex, spec.fusedMask?.unidirectional ?? false);
  } else if (masked && !spec.mask) {
    throw new Error('preLnLayer: this layer is masked and the unfused path needs the additive mask (spec.mask)');
  } else if ('qkv' in a) {
    const qkv = linear(g, w, a.qkv, h, opts);
    const heads = g.o('Transpose', [g.o('Reshape', [qkv, g.i64([0, 0, 3, N, D])])], { perm: [2, 0, 3, 1, 4] });
    const [q, k, v] = g.op('Split', [heads], { axis: 0 }, { count: 3 }).map((t) => g.o('Squeeze', [t, g.i64([0])]));
    ctx = mergeHeads(g, attend(g, q, k, v, D, spec.mask), H);
  } else {
    const q = splitHeads(g, linear(g, w, a.q, h, opts), N, D);
    const k = splitHeads(g, linear(g, w, a.k, h, opts), N, D);
    const v = splitHeads(g, linear(g, w, a.v, h, opts), N, D);
    ctx = mergeHeads(g, attend(g, q, k, v, D, spec.mask), H);
  }
  const x1 = g.o('Add', [x, linear(g, w, names.out, ctx, opts)]);
  const h2 = layerNorm(g, w, names.ln2, x1, spec.eps);
  return g.o('Add', [x1, linear(g, w, names.fc2, activation(g, linear(g, w, names.fc1, h2, opts), spec.act), opts)]);
}

export interface PatchEmbeddingNames {
  /** Conv weight [H, 3, P, P]. */
  patch: string;
  /** Conv bias [H], when the family has one (BLIP yes, CLIP no). */
  patchBias?: string;
  /** [H] or [1, 1, H]. */
  classEmbedding: string;
  /** [1, T, H] or [T, H] (an nn.Parameter in BLIP, nn.Embedding weight in CLIP). */
  positionEmbedding: string;
}

/**
 * ViT embeddings: patch conv (kernel = stride = P), patches flattened row-major, the class
 * token prepended, position embeddings added.
 * In: pixel_values float32 [B, 3, S, S]. Out: float32 [B, T, H], T = (S/P)² + 1.
 */
export function patchEmbeddings(g: GraphBuilder, w: WeightGetter, names: PatchEmbeddingNames, px: string, spec: { hidden: number; patchSize: number; seqLen: number }): string {
  const H = spec.hidden;
  const pw = w.get(names.patch);
  const convInputs = [px, g.weight(names.patch, pw.data, pw.shape)];
  if (names.patchBias) {
    const pb = w.get(names.patchBias);
    convInputs.push(g.weight(names.patchBias, pb.data, pb.shape));
  }
  const conv = g.o('Conv', convInputs, { kernel_shape: [spec.patchSize, spec.patchSize], strides: [spec.patchSize, spec.patchSize] });
  const patches = g.o('Transpose', [g.o('Reshape', [conv, g.i64([0, H, -1])])], { perm: [0, 2, 1] });
  const cls = w.get(names.classEmbedding);
  const clsRow = g.weight(names.classEmbedding, cls.data, [1, 1, H]);
  const clsB = g.o('Expand', [clsRow, g.o('Concat', [dim(g, px, 0), g.i64([1, H])], { axis: 0 })]);
  const pos = w.get(names.positionEmbedding);
  return g.o('Add', [g.o('Concat', [clsB, patches], { axis: 1 }), g.weight(names.positionEmbedding, pos.data, [1, spec.seqLen, H])]);
}

/** Row 0 of every batch entry: [B, T, H] → [B, H] (the class token). */
export function classToken(g: GraphBuilder, x: string): string {
  return g.o('Gather', [x, g.i64([0], [])], { axis: 1 });
}
