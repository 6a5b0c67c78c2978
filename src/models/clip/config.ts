import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { CapfiltError } from '../../core/errors.ts';
import { OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, parseWith, readJson } from '../runtime/config-files.ts';
import { parseActivation, type Activation } from '../runtime/graph/layers.ts';
import type { PreprocessConfig } from '../runtime/preprocess.ts';

/**
 * CLIP config.json (HF CLIPConfig: `text_config`, `vision_config`, `projection_dim`) and
 * preprocessor_config.json (CLIPImageProcessor), validated with zod. Defaults are
 * configuration_clip.py's, so the sparse configs some checkpoints ship parse as HF parses them.
 */

const positiveInt = z.number().int().positive();

const textSchema = z.looseObject({
  vocab_size: positiveInt.default(49408),
  hidden_size: positiveInt.default(512),
  intermediate_size: positiveInt.default(2048),
  num_hidden_layers: positiveInt.default(12),
  num_attention_heads: positiveInt.default(8),
  max_position_embeddings: positiveInt.default(77),
  hidden_act: z.string().default('quick_gelu'),
  layer_norm_eps: z.number().positive().default(1e-5),
  bos_token_id: z.number().int().nonnegative().default(49406),
  eos_token_id: z.number().int().nonnegative().default(49407),
  pad_token_id: z.number().int().nonnegative().default(1),
});

const visionSchema = z.looseObject({
  hidden_size: positiveInt.default(768),
  intermediate_size: positiveInt.default(3072),
  num_hidden_layers: positiveInt.default(12),
  num_attention_heads: positiveInt.default(12),
  num_channels: z.literal(3).default(3),
  image_size: positiveInt.default(224),
  patch_size: positiveInt.default(32),
  hidden_act: z.string().default('quick_gelu'),
  layer_norm_eps: z.number().positive().default(1e-5),
});

const clipSchema = z.looseObject({
  model_type: z.string().optional(),
  architectures: z.array(z.string()).optional(),
  projection_dim: positiveInt.default(512),
  logit_scale_init_value: z.number().default(2.6592),
  text_config: textSchema.default(textSchema.parse({})),
  vision_config: visionSchema.default(visionSchema.parse({})),
});

export interface ClipTowerConfig {
  hiddenSize: number;
  intermediateSize: number;
  layers: number;
  heads: number;
  act: Activation;
  eps: number;
}

export interface ClipConfig {
  projectionDim: number;
  text: ClipTowerConfig & {
    vocabSize: number;
    maxPositions: number;
    bosId: number;
    eosId: number;
    padId: number;
    /**
     * HF's pooling rule (CLIPTextTransformer.forward): legacy configs (eos_token_id == 2) pool at
     * argmax(input_ids), where the end-of-text token has the highest id; others at the first
     * position holding eos_token_id.
     */
    pooling: 'argmax' | 'first-eos';
  };
  vision: ClipTowerConfig & { imageSize: number; patchSize: number; seqLen: number };
  raw: Record<string, unknown>;
}

export const CLIP_ARCHITECTURE = 'CLIPModel';

/** A folder's config.json is a CLIP one (model_type "clip" or a CLIPModel architecture). */
export function isClipConfig(json: unknown): boolean {
  if (typeof json !== 'object' || json === null) return false;
  const c = json as { model_type?: unknown; architectures?: unknown };
  return c.model_type === 'clip' || (Array.isArray(c.architectures) && c.architectures.includes(CLIP_ARCHITECTURE));
}

function tower(c: z.infer<typeof textSchema> | z.infer<typeof visionSchema>, file: string, name: string): ClipTowerConfig {
  if (c.hidden_size % c.num_attention_heads !== 0) {
    throw new CapfiltError('MODEL_CONFIG_INVALID', `${file}: ${name}.hidden_size ${c.hidden_size} is not divisible by num_attention_heads ${c.num_attention_heads}`, { file });
  }
  return {
    hiddenSize: c.hidden_size,
    intermediateSize: c.intermediate_size,
    layers: c.num_hidden_layers,
    heads: c.num_attention_heads,
    act: parseActivation(c.hidden_act, file, `${name}.hidden_act`),
    eps: c.layer_norm_eps,
  };
}

/**
 * Configs written by transformers < 4.27 may carry `text_config_dict` / `vision_config_dict`;
 * CLIPConfig lets them override `text_config` / `vision_config`, and so do we.
 */
function legacyDicts(json: Record<string, unknown>): Record<string, unknown> {
  const out = { ...json };
  for (const tower of ['text_config', 'vision_config']) {
    const legacy = json[`${tower}_dict`];
    if (legacy && typeof legacy === 'object') out[tower] = { ...((json[tower] as object | undefined) ?? {}), ...legacy };
  }
  return out;
}

export function parseClipConfig(json: unknown, file: string): ClipConfig {
  if (!isClipConfig(json)) {
    throw new CapfiltError('MODEL_UNSUPPORTED', `${file}: not a CLIP config (model_type "clip" or architectures ["CLIPModel"])`, { file });
  }
  const c = parseWith(clipSchema, legacyDicts(json as Record<string, unknown>), file);
  const t = c.text_config;
  const v = c.vision_config;
  if (v.image_size % v.patch_size !== 0) {
    throw new CapfiltError('MODEL_CONFIG_INVALID', `${file}: vision_config.image_size ${v.image_size} is not a multiple of patch_size ${v.patch_size}`, { file });
  }
  const grid = v.image_size / v.patch_size;
  return {
    projectionDim: c.projection_dim,
    text: {
      ...tower(t, file, 'text_config'),
      vocabSize: t.vocab_size,
      maxPositions: t.max_position_embeddings,
      bosId: t.bos_token_id,
      eosId: t.eos_token_id,
      padId: t.pad_token_id,
      pooling: t.eos_token_id === 2 ? 'argmax' : 'first-eos',
    },
    vision: { ...tower(v, file, 'vision_config'), imageSize: v.image_size, patchSize: v.patch_size, seqLen: grid * grid + 1 },
    raw: json as Record<string, unknown>,
  };
}

export function loadClipConfig(dir: string): ClipConfig {
  const file = join(dir, 'config.json');
  return parseClipConfig(readJson(file), file);
}

const sizeSchema = z.union([positiveInt, z.looseObject({ shortest_edge: positiveInt }), z.looseObject({ height: positiveInt, width: positiveInt })]);

const preprocessorSchema = z.looseObject({
  do_resize: z.boolean().optional(),
  size: sizeSchema.optional(),
  resample: z.number().int().optional(),
  do_center_crop: z.boolean().optional(),
  crop_size: sizeSchema.optional(),
  do_rescale: z.boolean().optional(),
  rescale_factor: z.number().positive().optional(),
  do_normalize: z.boolean().optional(),
  image_mean: z.array(z.number()).length(3).optional(),
  image_std: z.array(z.number().positive()).length(3).optional(),
});

export interface ClipPreprocessorConfig extends PreprocessConfig {
  raw: Record<string, unknown>;
}

/**
 * CLIPImageProcessor's steps for a folder: shortest edge → `size`, centre crop → `crop_size`
 * (must equal the vision tower's image_size: the graphs are built for it), rescale, normalise.
 * Without a preprocessor_config.json, CLIPImageProcessor's defaults at the tower's size.
 */
export function loadClipPreprocessor(dir: string, imageSize: number): ClipPreprocessorConfig {
  const file = join(dir, 'preprocessor_config.json');
  const raw = existsSync(file)
    ? (readJson(file) as Record<string, unknown>)
    : { image_processor_type: 'CLIPImageProcessor', do_resize: true, size: { shortest_edge: imageSize }, resample: 3, do_center_crop: true, crop_size: { height: imageSize, width: imageSize }, do_rescale: true, rescale_factor: 1 / 255, do_normalize: true, image_mean: OPENAI_CLIP_MEAN, image_std: OPENAI_CLIP_STD, do_convert_rgb: true };
  const p = parseWith(preprocessorSchema, raw, file);
  if (p.resample !== undefined && p.resample !== 3) {
    throw new CapfiltError('MODEL_UNSUPPORTED', `${file}: resample ${p.resample} (only 3, PIL bicubic, is implemented)`, { file });
  }
  const side = (s: z.infer<typeof sizeSchema> | undefined, what: string): number | undefined => {
    if (s === undefined) return undefined;
    if (typeof s === 'number') return s;
    if ('shortest_edge' in s) return s.shortest_edge as number;
    if (s.height !== s.width) throw new CapfiltError('MODEL_UNSUPPORTED', `${file}: non-square ${what} ${s.height}x${s.width}`, { file });
    return s.height as number;
  };
  const crop = p.do_center_crop === false ? undefined : side(p.crop_size, 'crop_size') ?? imageSize;
  const edge = p.do_resize === false ? undefined : side(p.size, 'size') ?? imageSize;
  // A {height, width} size is a plain resize (no aspect kept), as HF's resize does with it.
  const square = typeof p.size === 'object' && 'height' in p.size;
  if (square && edge !== crop) {
    throw new CapfiltError('MODEL_UNSUPPORTED', `${file}: size ${edge}x${edge} followed by a ${crop} crop`, { file });
  }
  if (crop === undefined || edge === undefined) {
    throw new CapfiltError('MODEL_UNSUPPORTED', `${file}: do_resize and do_center_crop must be on (the vision graph takes ${imageSize}×${imageSize} pixels)`, { file });
  }
  if (crop !== imageSize) {
    throw new CapfiltError('MODEL_CONFIG_INVALID', `${file}: crop_size ${crop} disagrees with vision_config.image_size ${imageSize}`, { file });
  }
  const normalize = p.do_normalize !== false;
  return {
    imageSize,
    resize: square ? { mode: 'square' } : { mode: 'shortest-edge', shortestEdge: edge },
    mean: normalize ? p.image_mean ?? OPENAI_CLIP_MEAN : [0, 0, 0],
    std: normalize ? p.image_std ?? OPENAI_CLIP_STD : [1, 1, 1],
    rescaleFactor: p.do_rescale === false ? 1 : p.rescale_factor ?? 1 / 255,
    raw,
  };
}
