import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CapfiltError } from '../../../../src/core/errors.ts';
import { loadBlipConfig, loadPreprocessorConfig, parseBlipConfig } from '../../../../src/models/blip/config.ts';

const t1 = new URL('../../../fixtures/parity/t1/', import.meta.url).pathname;
const base = JSON.parse(readFileSync(join(t1, 'filter/config.json'), 'utf8'));
const dir = mkdtempSync(join(tmpdir(), 'capfilt-cfg-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function err(fn: () => unknown): CapfiltError {
  try {
    fn();
  } catch (e) {
    if (e instanceof CapfiltError) return e;
    throw e;
  }
  throw new Error('no error');
}

const edited = (edit: (c: any) => void): unknown => {
  const c = structuredClone(base);
  edit(c);
  return c;
};

describe('BLIP config.json', () => {
  it('reads sizes and special ids from the file', () => {
    const c = loadBlipConfig(join(t1, 'captioner'));
    expect(c.architecture).toBe('BlipForConditionalGeneration');
    expect(c.vision.seqLen).toBe((32 / 8) ** 2 + 1);
    expect(c.text.encoderHiddenSize).toBe(32);
    expect(c.ids).toMatchObject({ bos: 94, sep: 2, pad: 0, eos: 3 });
    expect(loadBlipConfig(join(t1, 'filter')).projectionDim).toBe(16);
  });

  it('refuses an unsupported hidden_act with MODEL_UNSUPPORTED naming the field', () => {
    const e = err(() => parseBlipConfig(edited((c) => { c.text_config.hidden_act = 'swish'; }), 'x/config.json'));
    expect(e.code).toBe('MODEL_UNSUPPORTED');
    expect(e.message).toContain('x/config.json: text_config.hidden_act "swish"');
  });

  it('refuses missing fields, bad head splits and unknown architectures', () => {
    const missing = err(() => parseBlipConfig(edited((c) => { delete c.vision_config.patch_size; }), 'm.json'));
    expect(missing.code).toBe('MODEL_CONFIG_INVALID');
    expect(missing.message).toContain('patch_size');
    const heads = err(() => parseBlipConfig(edited((c) => { c.text_config.num_attention_heads = 5; }), 'h.json'));
    expect(heads.message).toContain('not divisible');
    const arch = err(() => parseBlipConfig(edited((c) => { c.architectures = ['BlipForQuestionAnswering']; }), 'a.json'));
    expect(arch.code).toBe('MODEL_UNSUPPORTED');
    writeFileSync(join(dir, 'config.json'), '{ nope');
    expect(err(() => loadBlipConfig(dir)).code).toBe('MODEL_CONFIG_INVALID');
  });

  it('uses BlipImageProcessor defaults without preprocessor_config.json and checks the size when present', () => {
    const d = loadPreprocessorConfig(join(t1, 'filter'), 32);
    expect(d.imageSize).toBe(32);
    expect(d.mean[0]).toBeCloseTo(0.48145466);
    writeFileSync(join(dir, 'preprocessor_config.json'), JSON.stringify({ size: { height: 48, width: 48 }, image_mean: [0.5, 0.5, 0.5], image_std: [0.5, 0.5, 0.5] }));
    expect(err(() => loadPreprocessorConfig(dir, 32)).code).toBe('MODEL_CONFIG_INVALID');
    const ok = loadPreprocessorConfig(dir, 48);
    expect(ok.mean).toEqual([0.5, 0.5, 0.5]);
    expect(ok.rescaleFactor).toBeCloseTo(1 / 255);
  });
});
