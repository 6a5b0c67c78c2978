import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseClipConfig } from '../src/models/clip/config.ts';
import { LOGIT_SCALE, expectedWeights } from '../src/models/clip/names.ts';
import { writeRandomSafetensors } from './random-weights.ts';

/**
 * CLIPModel folders with random weights at released sizes (config.json as the HF hub has it,
 * model.safetensors, preprocessor_config.json, OpenAI's vocab.json + merges.txt), for the
 * benchmarks and for tests that need the real 49,408-token vocabulary.
 */

export interface ClipDims {
  projection: number;
  vision: { hidden: number; intermediate: number; layers: number; heads: number; imageSize: number; patch: number };
  text: { hidden: number; intermediate: number; layers: number; heads: number };
  act?: 'quick_gelu' | 'gelu';
}

export const CLIP_SIZES: Record<'vit-b-32' | 'vit-b-16' | 'vit-l-14' | 'tiny', ClipDims> = {
  'vit-b-32': { projection: 512, vision: { hidden: 768, intermediate: 3072, layers: 12, heads: 12, imageSize: 224, patch: 32 }, text: { hidden: 512, intermediate: 2048, layers: 12, heads: 8 } },
  'vit-b-16': { projection: 512, vision: { hidden: 768, intermediate: 3072, layers: 12, heads: 12, imageSize: 224, patch: 16 }, text: { hidden: 512, intermediate: 2048, layers: 12, heads: 8 } },
  'vit-l-14': { projection: 768, vision: { hidden: 1024, intermediate: 4096, layers: 24, heads: 16, imageSize: 224, patch: 14 }, text: { hidden: 768, intermediate: 3072, layers: 12, heads: 12 } },
  tiny: { projection: 16, vision: { hidden: 32, intermediate: 64, layers: 2, heads: 4, imageSize: 32, patch: 8 }, text: { hidden: 32, intermediate: 64, layers: 2, heads: 4 } },
};

/** OpenAI's tokenizer files (the real 49,408-id vocabulary, MIT licensed), kept with the tests. */
export const CLIP_TOKENIZER_DIR = new URL('../test/fixtures/clip-tokenizer/', import.meta.url).pathname;

export function clipConfigJson(d: ClipDims): Record<string, unknown> {
  const act = d.act ?? 'quick_gelu';
  return {
    architectures: ['CLIPModel'],
    model_type: 'clip',
    projection_dim: d.projection,
    logit_scale_init_value: 2.6592,
    text_config: {
      model_type: 'clip_text_model', vocab_size: 49408, hidden_size: d.text.hidden, intermediate_size: d.text.intermediate,
      num_hidden_layers: d.text.layers, num_attention_heads: d.text.heads, max_position_embeddings: 77, hidden_act: act,
      layer_norm_eps: 1e-5, bos_token_id: 49406, eos_token_id: 49407, pad_token_id: 1, projection_dim: d.projection,
    },
    vision_config: {
      model_type: 'clip_vision_model', hidden_size: d.vision.hidden, intermediate_size: d.vision.intermediate,
      num_hidden_layers: d.vision.layers, num_attention_heads: d.vision.heads, image_size: d.vision.imageSize,
      patch_size: d.vision.patch, num_channels: 3, hidden_act: act, layer_norm_eps: 1e-5, projection_dim: d.projection,
    },
  };
}

export function writeRandomClip(dir: string, dims: ClipDims, seed = 0x27d4eb2f): void {
  mkdirSync(dir, { recursive: true });
  const json = clipConfigJson(dims);
  writeFileSync(join(dir, 'config.json'), `${JSON.stringify(json, null, 2)}\n`);
  const cfg = parseClipConfig(json, join(dir, 'config.json'));
  // OpenAI's trained value: exp(4.6052) = 100, the usual zero-shot temperature.
  writeRandomSafetensors(join(dir, 'model.safetensors'), expectedWeights(cfg).shapes, seed, { [LOGIT_SCALE]: (t) => t.fill(4.6052) });
  const S = dims.vision.imageSize;
  writeFileSync(join(dir, 'preprocessor_config.json'), `${JSON.stringify({
    image_processor_type: 'CLIPImageProcessor', do_resize: true, size: { shortest_edge: S }, resample: 3, do_center_crop: true,
    crop_size: { height: S, width: S }, do_rescale: true, rescale_factor: 1 / 255, do_normalize: true,
    image_mean: [0.48145466, 0.4578275, 0.40821073], image_std: [0.26862954, 0.26130258, 0.27577711], do_convert_rgb: true,
  }, null, 2)}\n`);
  for (const f of ['vocab.json', 'merges.txt', 'tokenizer_config.json', 'special_tokens_map.json']) copyFileSync(join(CLIP_TOKENIZER_DIR, f), join(dir, f));
}
