import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isCapfiltError } from '../../../../src/core/errors.ts';
import { loadClipPreprocessor, parseClipConfig } from '../../../../src/models/clip/config.ts';

const tmp = mkdtempSync(join(tmpdir(), 'capfilt-clip-config-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const base = () => ({
  architectures: ['CLIPModel'],
  model_type: 'clip',
  projection_dim: 16,
  text_config: { vocab_size: 100, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4, max_position_embeddings: 16, hidden_act: 'quick_gelu', eos_token_id: 2 },
  vision_config: { hidden_size: 40, intermediate_size: 80, num_hidden_layers: 2, num_attention_heads: 4, image_size: 32, patch_size: 8, hidden_act: 'gelu' },
});

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return isCapfiltError(e) ? e.code : 'not coded';
  }
  return undefined;
}

describe('CLIP config.json', () => {
  it('picks HF\'s pooling rule from eos_token_id', () => {
    expect(parseClipConfig(base(), 'c.json').text.pooling).toBe('argmax');
    const c = base();
    c.text_config.eos_token_id = 49407;
    expect(parseClipConfig(c, 'c.json').text.pooling).toBe('first-eos');
  });

  it('reads each tower\'s activation and sizes', () => {
    const cfg = parseClipConfig(base(), 'c.json');
    expect(cfg.text.act).toBe('quick_gelu');
    expect(cfg.vision.act).toBe('gelu');
    expect(cfg.vision.seqLen).toBe(17);
    expect(cfg.projectionDim).toBe(16);
  });

  it('fills a sparse config with configuration_clip.py\'s defaults (ViT-B/32, current ids)', () => {
    const cfg = parseClipConfig({ model_type: 'clip' }, 'c.json');
    expect(cfg.vision).toMatchObject({ hiddenSize: 768, layers: 12, imageSize: 224, patchSize: 32, act: 'quick_gelu', seqLen: 50 });
    expect(cfg.text).toMatchObject({ vocabSize: 49408, hiddenSize: 512, maxPositions: 77, eosId: 49407, pooling: 'first-eos' });
  });

  it('lets legacy text_config_dict / vision_config_dict override the tower configs', () => {
    const c = { ...base(), text_config_dict: { hidden_act: 'gelu' }, vision_config_dict: { image_size: 48 } };
    const cfg = parseClipConfig(c, 'c.json');
    expect(cfg.text.act).toBe('gelu');
    expect(cfg.vision.imageSize).toBe(48);
  });

  it('refuses what the graphs cannot build, with coded errors', () => {
    expect(codeOf(() => parseClipConfig({ model_type: 'blip' }, 'c.json'))).toBe('MODEL_UNSUPPORTED');
    const act = base();
    act.text_config.hidden_act = 'swish';
    expect(codeOf(() => parseClipConfig(act, 'c.json'))).toBe('MODEL_UNSUPPORTED');
    const heads = base();
    heads.vision_config.num_attention_heads = 3;
    expect(codeOf(() => parseClipConfig(heads, 'c.json'))).toBe('MODEL_CONFIG_INVALID');
    const patch = base();
    patch.vision_config.patch_size = 7;
    expect(codeOf(() => parseClipConfig(patch, 'c.json'))).toBe('MODEL_CONFIG_INVALID');
  });
});

describe('CLIP preprocessor_config.json', () => {
  const folder = (name: string, pre: Record<string, unknown> | null): string => {
    const dir = join(tmp, name);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    if (pre) writeFileSync(join(dir, 'preprocessor_config.json'), JSON.stringify(pre));
    return dir;
  };

  it('reads shortest_edge + crop_size, mean and std', () => {
    const p = loadClipPreprocessor(folder('a', { size: { shortest_edge: 40 }, crop_size: { height: 32, width: 32 }, image_mean: [0.5, 0.5, 0.5], image_std: [0.25, 0.25, 0.25] }), 32);
    expect(p).toMatchObject({ imageSize: 32, resize: { mode: 'shortest-edge', shortestEdge: 40 }, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25], rescaleFactor: 1 / 255 });
  });

  it('takes the legacy integer size and crop_size, and defaults without a file', () => {
    expect(loadClipPreprocessor(folder('b', { size: 32, crop_size: 32 }), 32).resize).toEqual({ mode: 'shortest-edge', shortestEdge: 32 });
    expect(loadClipPreprocessor(folder('c', null), 32)).toMatchObject({ resize: { mode: 'shortest-edge', shortestEdge: 32 }, mean: [0.48145466, 0.4578275, 0.40821073] });
    expect(loadClipPreprocessor(folder('d', { size: { height: 32, width: 32 }, crop_size: 32 }), 32).resize).toEqual({ mode: 'square' });
  });

  it('refuses a crop the vision graph was not built for, and resamplers other than bicubic', () => {
    expect(codeOf(() => loadClipPreprocessor(folder('e', { size: { shortest_edge: 32 }, crop_size: 28 }), 32))).toBe('MODEL_CONFIG_INVALID');
    expect(codeOf(() => loadClipPreprocessor(folder('f', { resample: 2 }), 32))).toBe('MODEL_UNSUPPORTED');
    expect(codeOf(() => loadClipPreprocessor(folder('g', { do_center_crop: false }), 32))).toBe('MODEL_UNSUPPORTED');
  });
});
