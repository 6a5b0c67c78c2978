import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expectedWeights } from '../src/models/blip/weights/names.ts';
import { parseBlipConfig } from '../src/models/blip/config.ts';
import { writeRandomSafetensors } from './random-weights.ts';

/**
 * Writes a BLIP captioner/ + filter/ pair with random weights at the released base sizes
 * (blip-image-captioning-base / blip-itm-base-coco dimensions) for benchmarks: config.json,
 * model.safetensors (streamed tensor by tensor), a BERT vocab.txt with BLIP's [DEC]/[ENC].
 */

export const BASE_DIMS = {
  vision: { hidden_size: 768, intermediate_size: 3072, num_hidden_layers: 12, num_attention_heads: 12, image_size: 384, patch_size: 16 },
  text: { vocab_size: 30524, hidden_size: 768, intermediate_size: 3072, num_hidden_layers: 12, num_attention_heads: 12, max_position_embeddings: 512 },
};

function config(architecture: string): Record<string, unknown> {
  return {
    architectures: [architecture],
    model_type: 'blip',
    image_text_hidden_size: 256,
    projection_dim: 512,
    text_config: { ...BASE_DIMS.text, model_type: 'blip_text_model', encoder_hidden_size: 768, hidden_act: 'gelu', layer_norm_eps: 1e-12, bos_token_id: 30522, sep_token_id: 102, pad_token_id: 0, eos_token_id: 2 },
    vision_config: { ...BASE_DIMS.vision, model_type: 'blip_vision_model', hidden_act: 'gelu', layer_norm_eps: 1e-5 },
  };
}

function writeModel(dir: string, architecture: string, seed: number): void {
  mkdirSync(dir, { recursive: true });
  const cfgJson = config(architecture);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(cfgJson, null, 2));
  const cfg = parseBlipConfig(cfgJson, join(dir, 'config.json'));
  writeRandomSafetensors(join(dir, 'model.safetensors'), expectedWeights(cfg).shapes, seed);
  const vocab = Array.from({ length: 30524 }, (_, i) => `w${i}`);
  Object.assign(vocab, { 0: '[PAD]', 100: '[UNK]', 101: '[CLS]', 102: '[SEP]', 103: '[MASK]', 30522: '[DEC]', 30523: '[ENC]' });
  'a picture of the dog cat on in with beach woman sitting red blue circle square'.split(' ').forEach((w, i) => { vocab[1000 + i] = w; });
  writeFileSync(join(dir, 'vocab.txt'), `${vocab.join('\n')}\n`);
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ tokenizer_class: 'BertTokenizer', do_lower_case: true, bos_token: '[DEC]', additional_special_tokens: ['[ENC]'] }));
}

export function writeRandomBlip(root: string): void {
  writeModel(join(root, 'captioner'), 'BlipForConditionalGeneration', 0x9e3779b9);
  writeModel(join(root, 'filter'), 'BlipForImageTextRetrieval', 0x85ebca6b);
}
