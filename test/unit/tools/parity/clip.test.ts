import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runParity } from '../../../../tools/parity.ts';

const clipT1 = new URL('../../../fixtures/parity/clip-t1/', import.meta.url).pathname;
const tmp = mkdtempSync(join(tmpdir(), 'capfilt-clip-parity-test-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function variant(name: string, edit: (v: any, cfg: any) => void): string {
  const dir = join(tmp, name);
  cpSync(clipT1, dir, { recursive: true });
  const v = JSON.parse(readFileSync(join(dir, 'vectors.json'), 'utf8'));
  const cfg = JSON.parse(readFileSync(join(dir, 'model', 'config.json'), 'utf8'));
  edit(v, cfg);
  writeFileSync(join(dir, 'vectors.json'), JSON.stringify(v));
  writeFileSync(join(dir, 'model', 'config.json'), JSON.stringify(cfg));
  return dir;
}

describe('CLIP parity (npm run parity) on the clip-t1 vectors', () => {
  it('reproduces every tower output, the pooled index, the similarities and the preprocessing', async () => {
    const lines: string[] = [];
    const report = await runParity(clipT1, (l) => lines.push(l));
    expect(report.lines.filter((l) => !l.ok), lines.join('\n')).toEqual([]);
    const outputs = report.lines.map((l) => `${l.section}.${l.output}`);
    for (const o of [
      'vision.last_hidden_state', 'vision.pooler_output', 'vision.image_embeds', 'text.last_hidden_state', 'text.pool_index',
      'text.text_embeds', 'text.pooler_output_without_attention_mask', 'similarity.cosine', 'similarity.logits_per_image',
      'similarity.logit_scale_exp', 'preprocess.image_0.cropped_uint8', 'preprocess.image_1.pixel_values', 'preprocess.image_embeds',
    ]) expect(outputs).toContain(o);
  });

  it('fails the outputs that are off by more than the tolerance, and only those', async () => {
    const dir = variant('perturbed', (v) => {
      v.similarity.cosine.data[1] += 1e-3;
      v.text.pool_index.data[0] = (v.text.pool_index.data[0] + 1) % v.inputs.input_ids.shape[1];
    });
    const report = await runParity(dir, () => {});
    expect(report.ok).toBe(false);
    expect(report.lines.filter((l) => !l.ok).map((l) => `${l.section}.${l.output}`).sort()).toEqual(['similarity.cosine', 'text.pool_index']);
  });

  it('pools at the first end-of-text id when eos_token_id is not the legacy 2', async () => {
    // Every row's highest id (99) is also its first 99, so the first-eos rule must land on the
    // same positions: the recorded vectors still hold, through the other pooling code path.
    const dir = variant('first-eos', (_v, cfg) => {
      cfg.text_config.eos_token_id = 99;
    });
    const lines: string[] = [];
    const report = await runParity(dir, (l) => lines.push(l));
    expect(lines.join('\n')).toContain('text pooling: first-eos');
    expect(report.ok, lines.join('\n')).toBe(true);
    const moved = variant('first-eos-elsewhere', (_v, cfg) => {
      cfg.text_config.eos_token_id = 98;
    });
    const other = await runParity(moved, () => {});
    expect(other.lines.find((l) => l.output === 'pool_index')?.ok).toBe(false);
  });

  it('notices the activation: gelu instead of quick_gelu moves the outputs', async () => {
    const dir = variant('gelu', (_v, cfg) => {
      cfg.vision_config.hidden_act = 'gelu';
    });
    const report = await runParity(dir, () => {});
    expect(report.lines.find((l) => l.section === 'vision' && l.output === 'image_embeds')?.ok).toBe(false);
    expect(report.lines.find((l) => l.section === 'text' && l.output === 'text_embeds')?.ok).toBe(true);
  });
});
