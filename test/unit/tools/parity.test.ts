import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runParity } from '../../../tools/parity.ts';
import { readEntries, writeShardedSafetensors } from '../../helpers/safetensors-writer.ts';

const t1 = new URL('../../fixtures/parity/t1/', import.meta.url).pathname;
const tmp = mkdtempSync(join(tmpdir(), 'capfilt-parity-test-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('BLIP parity (npm run parity) on the t1 vectors', () => {
  it('reproduces every recorded section within tolerance, with exact greedy ids', async () => {
    const lines: string[] = [];
    const report = await runParity(t1, (l) => lines.push(l));
    const failed = report.lines.filter((l) => !l.ok);
    expect(failed, lines.join('\n')).toEqual([]);
    const outputs = report.lines.map((l) => `${l.section}.${l.output}`);
    for (const o of [
      'vision.captioner_last_hidden_state', 'vision.filter_last_hidden_state', 'captioner_teacher_forced.logits',
      'captioner_greedy.no_prompt.sequences', 'captioner_greedy.with_prompt.sequences', 'captioner_greedy.with_prompt.step_logits',
      'filter_itm.itm_logits', 'filter_itm.itm_prob', 'filter_itc.sim', 'filter_itc.image_feat', 'filter_itc.text_feat', 'preprocess.pixel_values',
    ]) expect(outputs).toContain(o);
  });

  it('fails when an expected value is off by more than the tolerance', async () => {
    const dir = join(tmp, 'perturbed');
    cpSync(t1, dir, { recursive: true });
    const v = JSON.parse(readFileSync(join(dir, 'vectors.json'), 'utf8'));
    v.filter_itc.sim.data[1] += 10 * v.tolerance.float_abs;
    v.captioner_greedy.no_prompt.sequences.data[2] = (v.captioner_greedy.no_prompt.sequences.data[2] + 1) % v.shapes.vocab_size;
    writeFileSync(join(dir, 'vectors.json'), JSON.stringify(v));
    const report = await runParity(dir, () => {});
    expect(report.ok).toBe(false);
    expect(report.lines.filter((l) => !l.ok).map((l) => `${l.section}.${l.output}`).sort()).toEqual(['captioner_greedy.no_prompt.sequences', 'filter_itc.sim']);
  });
});

describe('BLIP parity with other weight formats', () => {
  it('passes with the captioner given as pytorch_model.bin only', async () => {
    const dir = join(tmp, 'bin');
    cpSync(t1, dir, { recursive: true });
    rmSync(join(dir, 'captioner/model.safetensors'));
    cpSync(new URL('../../fixtures/pickle/t1_captioner.bin', import.meta.url).pathname, join(dir, 'captioner/pytorch_model.bin'));
    const lines: string[] = [];
    const report = await runParity(dir, (l) => lines.push(l));
    expect(report.ok, lines.join('\n')).toBe(true);
  });

  it('passes with the captioner and the filter given as sharded safetensors (index + shards)', async () => {
    const dir = join(tmp, 'sharded');
    cpSync(t1, dir, { recursive: true });
    for (const role of ['captioner', 'filter']) {
      const file = join(dir, role, 'model.safetensors');
      const entries = readEntries(file);
      rmSync(file);
      writeShardedSafetensors(join(dir, role), entries, role === 'captioner' ? 2 : 3);
    }
    const lines: string[] = [];
    const report = await runParity(dir, (l) => lines.push(l));
    expect(report.ok, lines.join('\n')).toBe(true);
  });
});
