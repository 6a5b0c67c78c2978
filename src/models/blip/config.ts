import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { CapfiltError } from '../../core/errors.ts';
import { OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, parseWith, readJson } from '../runtime/config-files.ts';
import { parseActivation as activation, type Activation } from '../runtime/graph/layers.ts';

/**
 * BLIP config.json / preprocessor_config.json, validated with zod. Only the fields the runtime
 * reads are required; everything else in a released config passes through untouched.
 */


const positiveInt = z.number().int().positive();

const visionConfigSchema = z.looseObject({
  hidden_size: positiveInt,
  intermediate_size: positiveInt,
  num_hidden_layers: positiveInt,
  num_attention_heads: positiveInt,
  image_size: positiveInt,
  patch_size: positiveInt,
  hidden_act: z.string().default('gelu'),
  layer_norm_eps: z.number().positive().default(1e-5),
});

const textConfigSchema = z.looseObject({
  vocab_size: positiveInt,
  hidden_size: positiveInt,
  intermediate_size: positiveInt,
  num_hidden_layers: positiveInt,
  num_attention_heads: positiveInt,
  max_position_embeddings: positiveInt,
  encoder_hidden_size: positiveInt.optional(),
  hidden_act: z.string().default('gelu'),
  layer_norm_eps: z.number().positive().default(1e-12),
  bos_token_id: z.number().int().nonnegative().optional(),
  eos_token_id: z.number().int().nonnegative().optional(),
  sep_token_id: z.number().int().nonnegative().optional(),
  pad_token_id: z.number().int().nonnegative().optional(),
  cls_token_id: z.number().int().nonnegative().optional(),
});

const blipConfigSchema = z.looseObject({
  architectures: z.array(z.string()).min(1),
  model_type: z.string().optional(),
  image_text_hidden_size: positiveInt.default(256),
  text_config: textConfigSchema,
  vision_config: visionConfigSchema,
});

export type BlipArchitecture = 'BlipForConditionalGeneration' | 'BlipForImageTextRetrieval';
export const ARCHITECTURES: readonly BlipArchitecture[] = ['BlipForConditionalGeneration', 'BlipForImageTextRetrieval'];

export interface VisionConfig {
  hiddenSize: number;
  intermediateSize: number;
  layers: number;
  heads: number;
  imageSize: number;
  patchSize: number;
  act: Activation;
  eps: number;
  /** Tokens per image: patches plus the class token. */
  seqLen: number;
}

export interface TextConfig {
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  layers: number;
  heads: number;
  maxPositions: number;
  /** Width of the image embeddings the cross-attention K/V read. */
  encoderHiddenSize: number;
  act: Activation;
  eps: number;
}

export interface BlipConfig {
  architecture: BlipArchitecture;
  vision: VisionConfig;
  text: TextConfig;
  /** ITC projection width (vision_proj / text_proj output). */
  projectionDim: number;
  /** Special ids as the config states them; the tokenizer may fill in the rest. */
  ids: { bos?: number; eos?: number; sep?: number; pad?: number; cls?: number };
  /** The file as read, kept for manifests. */
  raw: Record<string, unknown>;
}

/** Validates a parsed config.json; `file` is only used in messages. */
export function parseBlipConfig(json: unknown, file: string): BlipConfig {
  const c = parseWith(blipConfigSchema, json, file);
  const architecture = c.architectures.find((a): a is BlipArchitecture => (ARCHITECTURES as readonly string[]).includes(a));
  if (!architecture) {
    throw new CapfiltError('MODEL_UNSUPPORTED', `${file}: architectures ${JSON.stringify(c.architectures)} names neither ${ARCHITECTURES.join(' nor ')}`, { file });
  }
  const v = c.vision_config;
  const t = c.text_config;
  for (const [name, cfg] of [['vision_config', v], ['text_config', t]] as const) {
    if (cfg.hidden_size % cfg.num_attention_heads !== 0) {
      throw new CapfiltError('MODEL_CONFIG_INVALID', `${file}: ${name}.hidden_size ${cfg.hidden_size} is not divisible by num_attention_heads ${cfg.num_attention_heads}`, { file });
    }
  }
  if (v.image_size % v.patch_size !== 0) {
    throw new CapfiltError('MODEL_CONFIG_INVALID', `${file}: vision_config.image_size ${v.image_size} is not a multiple of patch_size ${v.patch_size}`, { file });
  }
  const grid = v.image_size / v.patch_size;
  return {
    architecture,
    vision: {
      hiddenSize: v.hidden_size,
      intermediateSize: v.intermediate_size,
      layers: v.num_hidden_layers,
      heads: v.num_attention_heads,
      imageSize: v.image_size,
      patchSize: v.patch_size,
      act: activation(v.hidden_act, file, 'vision_config.hidden_act'),
      eps: v.layer_norm_eps,
      seqLen: grid * grid + 1,
    },
    text: {
      vocabSize: t.vocab_size,
      hiddenSize: t.hidden_size,
      intermediateSize: t.intermediate_size,
      layers: t.num_hidden_layers,
      heads: t.num_attention_heads,
      maxPositions: t.max_position_embeddings,
      encoderHiddenSize: t.encoder_hidden_size ?? v.hidden_size,
      act: activation(t.hidden_act, file, 'text_config.hidden_act'),
      eps: t.layer_norm_eps,
    },
    projectionDim: c.image_text_hidden_size,
    ids: { bos: t.bos_token_id, eos: t.eos_token_id, sep: t.sep_token_id, pad: t.pad_token_id, cls: t.cls_token_id },
    raw: json as Record<string, unknown>,
  };
}

export function loadBlipConfig(dir: string): BlipConfig {
  const file = join(dir, 'config.json');
  return parseBlipConfig(readJson(file), file);
}

const preprocessorSchema = z.looseObject({
  size: z.union([positiveInt, z.looseObject({ height: positiveInt, width: positiveInt }), z.looseObject({ shortest_edge: positiveInt })]).optional(),
  image_mean: z.array(z.number()).length(3).optional(),
  image_std: z.array(z.number().positive()).length(3).optional(),
  rescale_factor: z.number().positive().optional(),
  do_resize: z.boolean().optional(),
  do_rescale: z.boolean().optional(),
  do_normalize: z.boolean().optional(),
  do_convert_rgb: z.boolean().optional(),
  resample: z.number().int().optional(),
});

export interface PreprocessorConfig {
  /** Output is imageSize × imageSize (BLIP resizes without keeping the aspect ratio). */
  imageSize: number;
  mean: [number, number, number];
  std: [number, number, number];
  rescaleFactor: number;
  /** The file as read (or the defaults), written into converted folders. */
  raw: Record<string, unknown>;
}

/**
 * Reads preprocessor_config.json if present; otherwise BlipImageProcessor's defaults with the
 * vision tower's image size (the size the graphs were built for).
 */
export function loadPreprocessorConfig(dir: string, visionImageSize: number): PreprocessorConfig {
  const file = join(dir, 'preprocessor_config.json');
  if (!existsSync(file)) {
    const raw = {
      image_processor_type: 'BlipImageProcessor',
      size: { height: visionImageSize, width: visionImageSize },
      image_mean: OPENAI_CLIP_MEAN,
      image_std: OPENAI_CLIP_STD,
      rescale_factor: 1 / 255,
      do_resize: true, do_rescale: true, do_normalize: true, do_convert_rgb: true,
      resample: 3,
    };
    return { imageSize: visionImageSize, mean: OPENAI_CLIP_MEAN as PreprocessorConfig['mean'], std: OPENAI_CLIP_STD as PreprocessorConfig['std'], rescaleFactor: 1 / 255, raw };
  }
  const json = readJson(file);
  const p = parseWith(preprocessorSchema, json, file);
  let size = visionImageSize;
  if (typeof p.size === 'number') size = p.size;
  else if (p.size && 'height' in p.size) {
    if (p.size.height !== p.size.width) {
      throw new CapfiltError('MODEL_UNSUPPORTED', `${file}: non-square size ${p.size.height}x${p.size.width}`, { file });
    }
    size = p.size.height as number;
  } else if (p.size && 'shortest_edge' in p.size) size = p.size.shortest_edge as number;
  if (size !== visionImageSize) {
    throw new CapfiltError('MODEL_CONFIG_INVALID', `${file}: size ${size} disagrees with vision_config.image_size ${visionImageSize}`, { file });
  }
  const normalize = p.do_normalize !== false;
  return {
    imageSize: size,
    mean: (normalize ? p.image_mean ?? OPENAI_CLIP_MEAN : [0, 0, 0]) as PreprocessorConfig['mean'],
    std: (normalize ? p.image_std ?? OPENAI_CLIP_STD : [1, 1, 1]) as PreprocessorConfig['std'],
    rescaleFactor: p.do_rescale === false ? 1 : p.rescale_factor ?? 1 / 255,
    raw: json as Record<string, unknown>,
  };
}
