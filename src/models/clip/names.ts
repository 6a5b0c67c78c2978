import { isPositionIdsBuffer, type ExpectedWeights } from '../runtime/weights/source.ts';
import type { PreLnLayerNames } from '../runtime/graph/encoder.ts';
import type { ClipConfig, ClipTowerConfig } from './config.ts';

/**
 * CLIPModel's Hugging Face state-dict names and shapes (modeling_clip.py), derived from the
 * config, so a checkpoint is checked before any graph is built and a user can grep the names.
 */

export const VISION = 'vision_model';
export const TEXT = 'text_model';
export const LOGIT_SCALE = 'logit_scale';

export function layerNames(tower: string, i: number): PreLnLayerNames {
  const l = `${tower}.encoder.layers.${i}`;
  return {
    ln1: `${l}.layer_norm1`,
    ln2: `${l}.layer_norm2`,
    attention: { q: `${l}.self_attn.q_proj`, k: `${l}.self_attn.k_proj`, v: `${l}.self_attn.v_proj` },
    out: `${l}.self_attn.out_proj`,
    fc1: `${l}.mlp.fc1`,
    fc2: `${l}.mlp.fc2`,
  };
}

type Shapes = ExpectedWeights['shapes'];

function linear(m: Shapes, prefix: string, out: number, inp: number, bias = true): void {
  m.set(`${prefix}.weight`, [out, inp]);
  if (bias) m.set(`${prefix}.bias`, [out]);
}

function norm(m: Shapes, prefix: string, width: number): void {
  m.set(`${prefix}.weight`, [width]);
  m.set(`${prefix}.bias`, [width]);
}

function encoder(m: Shapes, tower: string, c: ClipTowerConfig): void {
  const H = c.hiddenSize;
  for (let i = 0; i < c.layers; i++) {
    const n = layerNames(tower, i);
    const a = n.attention as { q: string; k: string; v: string };
    norm(m, n.ln1, H);
    for (const p of [a.q, a.k, a.v, n.out]) linear(m, p, H, H);
    norm(m, n.ln2, H);
    linear(m, n.fc1, c.intermediateSize, H);
    linear(m, n.fc2, H, c.intermediateSize);
  }
}

export function visionWeights(m: Shapes, cfg: ClipConfig): void {
  const v = cfg.vision;
  m.set(`${VISION}.embeddings.class_embedding`, [v.hiddenSize]);
  m.set(`${VISION}.embeddings.patch_embedding.weight`, [v.hiddenSize, 3, v.patchSize, v.patchSize]);
  m.set(`${VISION}.embeddings.position_embedding.weight`, [v.seqLen, v.hiddenSize]);
  norm(m, `${VISION}.pre_layrnorm`, v.hiddenSize);
  encoder(m, VISION, v);
  norm(m, `${VISION}.post_layernorm`, v.hiddenSize);
  linear(m, 'visual_projection', cfg.projectionDim, v.hiddenSize, false);
}

export function textWeights(m: Shapes, cfg: ClipConfig): void {
  const t = cfg.text;
  m.set(`${TEXT}.embeddings.token_embedding.weight`, [t.vocabSize, t.hiddenSize]);
  m.set(`${TEXT}.embeddings.position_embedding.weight`, [t.maxPositions, t.hiddenSize]);
  encoder(m, TEXT, t);
  norm(m, `${TEXT}.final_layer_norm`, t.hiddenSize);
  linear(m, 'text_projection', cfg.projectionDim, t.hiddenSize, false);
}

export function expectedWeights(cfg: ClipConfig): ExpectedWeights {
  const m: Shapes = new Map();
  visionWeights(m, cfg);
  textWeights(m, cfg);
  // Stored as a 0-d tensor by some exports and as [1] by others; CheckedWeights accepts both.
  m.set(LOGIT_SCALE, [1]);
  return { shapes: m, fallbacks: {}, ignorable: isPositionIdsBuffer };
}
