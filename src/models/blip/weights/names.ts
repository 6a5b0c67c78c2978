import { isPositionIdsBuffer, type ExpectedWeights } from '../../runtime/weights/source.ts';
import type { BlipConfig } from '../config.ts';

/**
 * The Hugging Face state-dict names (and shapes) each BLIP architecture needs, derived from its
 * config. Spelled exactly as transformers' modeling_blip / modeling_blip_text write them, so the
 * missing/unexpected key check can list names a user can grep for in their checkpoint.
 */

type Shapes = ExpectedWeights['shapes'];

function linear(m: Shapes, prefix: string, out: number, inp: number): void {
  m.set(`${prefix}.weight`, [out, inp]);
  m.set(`${prefix}.bias`, [out]);
}

function norm(m: Shapes, prefix: string, width: number): void {
  m.set(`${prefix}.weight`, [width]);
  m.set(`${prefix}.bias`, [width]);
}

export function visionWeights(m: Shapes, cfg: BlipConfig): void {
  const v = cfg.vision;
  const p = 'vision_model';
  m.set(`${p}.embeddings.class_embedding`, [1, 1, v.hiddenSize]);
  m.set(`${p}.embeddings.patch_embedding.weight`, [v.hiddenSize, 3, v.patchSize, v.patchSize]);
  m.set(`${p}.embeddings.patch_embedding.bias`, [v.hiddenSize]);
  m.set(`${p}.embeddings.position_embedding`, [1, v.seqLen, v.hiddenSize]);
  for (let i = 0; i < v.layers; i++) {
    const l = `${p}.encoder.layers.${i}`;
    norm(m, `${l}.layer_norm1`, v.hiddenSize);
    linear(m, `${l}.self_attn.qkv`, 3 * v.hiddenSize, v.hiddenSize);
    linear(m, `${l}.self_attn.projection`, v.hiddenSize, v.hiddenSize);
    norm(m, `${l}.layer_norm2`, v.hiddenSize);
    linear(m, `${l}.mlp.fc1`, v.intermediateSize, v.hiddenSize);
    linear(m, `${l}.mlp.fc2`, v.hiddenSize, v.intermediateSize);
  }
  norm(m, `${p}.post_layernorm`, v.hiddenSize);
}

/** BERT-style text model (BlipTextModel) under `prefix`, always with cross-attention. */
export function textWeights(m: Shapes, cfg: BlipConfig, prefix: string): void {
  const t = cfg.text;
  m.set(`${prefix}.embeddings.word_embeddings.weight`, [t.vocabSize, t.hiddenSize]);
  m.set(`${prefix}.embeddings.position_embeddings.weight`, [t.maxPositions, t.hiddenSize]);
  norm(m, `${prefix}.embeddings.LayerNorm`, t.hiddenSize);
  for (let i = 0; i < t.layers; i++) {
    const l = `${prefix}.encoder.layer.${i}`;
    for (const kind of ['attention', 'crossattention']) {
      const kvIn = kind === 'attention' ? t.hiddenSize : t.encoderHiddenSize;
      linear(m, `${l}.${kind}.self.query`, t.hiddenSize, t.hiddenSize);
      linear(m, `${l}.${kind}.self.key`, t.hiddenSize, kvIn);
      linear(m, `${l}.${kind}.self.value`, t.hiddenSize, kvIn);
      linear(m, `${l}.${kind}.output.dense`, t.hiddenSize, t.hiddenSize);
      norm(m, `${l}.${kind}.output.LayerNorm`, t.hiddenSize);
    }
    linear(m, `${l}.intermediate.dense`, t.intermediateSize, t.hiddenSize);
    linear(m, `${l}.output.dense`, t.hiddenSize, t.intermediateSize);
    norm(m, `${l}.output.LayerNorm`, t.hiddenSize);
  }
}

export const LM_HEAD = {
  transform: 'text_decoder.cls.predictions.transform',
  decoderWeight: 'text_decoder.cls.predictions.decoder.weight',
  decoderBias: 'text_decoder.cls.predictions.decoder.bias',
  bias: 'text_decoder.cls.predictions.bias',
  wordEmbeddings: 'text_decoder.bert.embeddings.word_embeddings.weight',
} as const;

export function expectedWeights(cfg: BlipConfig): ExpectedWeights {
  const m: Shapes = new Map();
  visionWeights(m, cfg);
  const t = cfg.text;
  if (cfg.architecture === 'BlipForConditionalGeneration') {
    textWeights(m, cfg, 'text_decoder.bert');
    linear(m, `${LM_HEAD.transform}.dense`, t.hiddenSize, t.hiddenSize);
    norm(m, `${LM_HEAD.transform}.LayerNorm`, t.hiddenSize);
    m.set(LM_HEAD.decoderWeight, [t.vocabSize, t.hiddenSize]);
    m.set(LM_HEAD.bias, [t.vocabSize]);
  } else {
    textWeights(m, cfg, 'text_encoder');
    linear(m, 'itm_head', 2, t.hiddenSize);
    linear(m, 'vision_proj', cfg.projectionDim, cfg.vision.hiddenSize);
    linear(m, 'text_proj', cfg.projectionDim, t.hiddenSize);
  }
  return { shapes: m, fallbacks: FALLBACKS, ignorable: isIgnorableKey };
}

/**
 * Names that may stand in for an absent expected name, in order, as HF's tying does:
 * the LM head decoder weight is tied to the word embeddings; `decoder.bias` and
 * `predictions.bias` are one parameter stored under either name.
 */
export const FALLBACKS: Record<string, string[]> = {
  [LM_HEAD.decoderWeight]: [LM_HEAD.wordEmbeddings],
  [LM_HEAD.bias]: [LM_HEAD.decoderBias],
};

/** Stored names the model knows but does not need (aliases, non-persistent buffers). */
export function isIgnorableKey(name: string): boolean {
  return name === LM_HEAD.decoderBias || isPositionIdsBuffer(name);
}
