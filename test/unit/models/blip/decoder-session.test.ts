import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type * as ort from 'onnxruntime-node';
import { OrtDecoderSession } from '../../../../src/models/blip/decoder-session.ts';
import { loadModel, releaseModel, type LoadedModel } from '../../../../src/models/blip/loader.ts';
import { f32 } from '../../../../src/models/runtime/sessions.ts';
import { Float32Pool } from '../../../../src/models/runtime/buffers.ts';
import { logSumExp as logSumExpOf, softmax as softmaxOf } from '../../../../src/models/runtime/generation/processors.ts';
import { generate } from '../../../../src/models/runtime/generation/index.ts';
import type { GenerationOptions } from '../../../../src/models/runtime/generation/types.ts';

const t1 = new URL('../../../fixtures/parity/t1/', import.meta.url).pathname;
let model: LoadedModel;
let embeds: ort.Tensor;

beforeAll(async () => {
  model = await loadModel(join(t1, 'captioner'), { device: 'cpu', threads: 1, precision: 'fp32' });
  const S = model.cfg.vision.imageSize;
  const px = f32(Float32Array.from({ length: 3 * 3 * S * S }, (_, i) => Math.sin(i * 0.37)), [3, 3, S, S]);
  embeds = (await model.sessions.vision.run({ pixel_values: px })).last_hidden_state;
});
afterAll(async () => releaseModel(model));

const open = () => OrtDecoderSession.open(model.cfg, model.sessions.cross_kv, model.sessions.decoder, embeds);
const V = () => model.cfg.text.vocabSize;
const row = (logits: Float32Array, r: number) => Array.from(logits.subarray(r * V(), (r + 1) * V()));

function expectClose(a: number[], b: number[]): void {
  expect(a.length).toBe(b.length);
  for (let i = 0; i < a.length; i++) expect(Math.abs(a[i] - b[i])).toBeLessThan(1e-5);
}

describe('OrtDecoderSession', () => {
  it('gives the same logits with the KV cache as with the whole sequence at once', async () => {
    const bos = model.special.bos;
    const seqs = [[bos, 5, 9, 11], [bos, 7, 7, 30], [bos, 40, 2, 6]];
    const whole = await open();
    const all = await whole.step(seqs);
    const inc = await open();
    await inc.step(seqs.map((s) => s.slice(0, 2)));
    await inc.step(seqs.map((s) => [s[2]]));
    const last = await inc.step(seqs.map((s) => [s[3]]));
    for (let r = 0; r < 3; r++) expectClose(row(last, r), row(all, r));
  });

  it('re-indexes rows: grouped expansion, reordering and an irregular layout agree with fresh rows', async () => {
    const bos = model.special.bos;
    const base = await open();
    const ref = await base.step([[bos, 5], [bos, 6], [bos, 7]]);
    const refNext = await base.step([[8], [9], [10]]);

    const grouped = await open();
    await grouped.step([[bos, 5], [bos, 6], [bos, 7]]);
    grouped.select([0, 0, 1, 1, 2, 2]);
    expect(grouped.rows).toBe(6);
    const g = await grouped.step([[8], [8], [9], [9], [10], [10]]);
    for (let r = 0; r < 6; r++) expectClose(row(g, r), row(refNext, Math.floor(r / 2)));

    const irregular = await open();
    await irregular.step([[bos, 5], [bos, 6], [bos, 7]]);
    irregular.select([2, 0, 0, 2, 1]);
    const ir = await irregular.step([[10], [8], [8], [10], [9]]);
    [2, 0, 0, 2, 1].forEach((src, r) => expectClose(row(ir, r), row(refNext, src)));
    expect(row(ref, 0)).not.toEqual(row(ref, 1));
  });

  it('re-orders rows at the same row count: overwritten sources, cycles and kept rows agree with fresh rows', async () => {
    const bos = model.special.bos;
    const s = await open();
    await s.step([[bos, 5], [bos, 7], [bos, 9]]);
    await s.step([[6], [8], [10]]);
    const a = [bos, 5, 6];
    const c = [bos, 9, 10];
    // Row 0 is overwritten and is the source of rows 1 and 2.
    const steps: { select: number[]; next: number[][]; whole: number[][] }[] = [
      { select: [2, 0, 0], next: [[11], [12], [13]], whole: [[...c, 11], [...a, 12], [...a, 13]] },
      // A cycle: every row is overwritten by another.
      { select: [1, 2, 0], next: [[14], [15], [16]], whole: [[...a, 12, 14], [...a, 13, 15], [...c, 11, 16]] },
      // Two rows kept, one copied from a kept row.
      { select: [0, 0, 2], next: [[17], [18], [19]], whole: [[...a, 12, 14, 17], [...a, 12, 14, 18], [...c, 11, 16, 19]] },
    ];
    let images = [0, 1, 2];
    for (const { select, next, whole } of steps) {
      s.select(select);
      images = select.map((i) => images[i]);
      const got = await s.step(next);
      // The reference rows see the same images: a select before any step only re-assigns them.
      const fresh = await open();
      fresh.select(images);
      const ref = await fresh.step(whole);
      for (let r = 0; r < 3; r++) expectClose(row(got, r), row(ref, r));
    }
  });

  it('re-orders beams within their images by moving places, not caches: the same logits and log-sum-exps as fresh rows', async () => {
    const bos = model.special.bos;
    const pool = new Float32Pool();
    const s = await OrtDecoderSession.open(model.cfg, model.sessions.cross_kv, model.sessions.decoder, embeds, pool, model.rowGraphs);
    // Room for every step from the start: the caches never grow, so the pool's count shows gathers.
    s.reserve(8);
    await s.step([[bos, 5], [bos, 7], [bos, 9]]);
    // Three beams for images 0 and 2 (image 1 is done and dropped): a gather, places in row order.
    s.select([0, 0, 0, 2, 2, 2]);
    let seqs = [[bos, 5], [bos, 5], [bos, 5], [bos, 9], [bos, 9], [bos, 9]];
    const images = [0, 0, 0, 2, 2, 2];
    let next = [[20], [21], [22], [23], [24], [25]];
    // Within each image: a parent continued twice, a swap, a cycle, every row from one parent.
    const selections = [[1, 1, 0, 3, 5, 4], [2, 0, 1, 4, 4, 4], [0, 2, 2, 5, 3, 4], [1, 1, 1, 3, 4, 5]];
    let held = 0;
    for (const [k, select] of [[], ...selections].entries()) {
      if (select.length) {
        s.select(select);
        seqs = select.map((i) => seqs[i]);
      }
      const { logits: got, logSumExp } = await s.stepWithLogSumExp!(next);
      // Each row's log-sum-exp (the log-sum-exp graph over the logits in row order) is its own logits'.
      for (let r = 0; r < 6; r++) expect(Math.abs(logSumExp[r] - logSumExpOf(row(got, r)))).toBeLessThan(1e-4);
      // A gather would take a second set of caches from the pool; all a re-order may take is
      // the buffer that puts the logits back in row order.
      if (k === 0) held = pool.outstandingBytes;
      else expect([0, 6 * V() * 4]).toContain(pool.outstandingBytes - held);
      seqs = seqs.map((q, r) => [...q, next[r][0]]);
      const fresh = await open();
      fresh.select(images);
      const ref = await fresh.step(seqs);
      for (let r = 0; r < 6; r++) expectClose(row(got, r), row(ref, r));
      next = next.map(([t]) => [t + 10 + k]);
    }
  });

  it('gives each row\'s softmax from ONNX Runtime, and nucleus samples the same with it as without', async () => {
    const bos = model.special.bos;
    const s = await OrtDecoderSession.open(model.cfg, model.sessions.cross_kv, model.sessions.decoder, embeds, new Float32Pool(), model.rowGraphs);
    const logits = await s.step([[bos, 5], [bos, 7], [bos, 9]]);
    const { probs, top } = await s.softmax!(logits, 3);
    for (let r = 0; r < 3; r++) {
      const want = softmaxOf(logits.subarray(r * V(), (r + 1) * V()));
      expectClose(row(probs, r), Array.from(want));
      // The most likely tokens, in order, with their probabilities as in `probs`.
      const k = top!.k;
      expect(k).toBe(Math.min(64, V()));
      const ids = Array.from(top!.ids.subarray(r * k, (r + 1) * k));
      expect(ids.map((i) => probs[r * V() + i])).toEqual(Array.from(top!.probs.subarray(r * k, (r + 1) * k)));
      expect(new Set(ids).size).toBe(k);
      const sorted = Array.from({ length: V() }, (_, i) => i).sort((a, b) => probs[r * V() + b] - probs[r * V() + a] || a - b);
      expect(ids).toEqual(sorted.slice(0, k));
    }
    s.close();
    expect((await open()).softmax).toBeUndefined();

    const opts: GenerationOptions = {
      method: 'nucleus', maxLength: 12, minLength: 3, numBeams: 1, lengthPenalty: 1, topP: 0.9, topK: 0,
      temperature: 0.9, repetitionPenalty: 1.1, numReturnSequences: 4, prompt: '', seed: 5,
    };
    const keys = ['a', 'b', 'c'];
    const prefix = keys.map(() => [bos]);
    const withOrt = await generate(await OrtDecoderSession.open(model.cfg, model.sessions.cross_kv, model.sessions.decoder, embeds, new Float32Pool(), model.rowGraphs), prefix, opts, model.special, keys);
    const inJs = await generate(await open(), prefix, opts, model.special, keys);
    expect(withOrt).toEqual(inJs);
  });

  it('draws its buffers from a pool: stale contents never reach the logits, and close gives every buffer back', async () => {
    const bos = model.special.bos;
    const { layers, heads, hiddenSize } = model.cfg.text;
    // Poison free buffers of exactly the caches' size (3 rows, 6 reserved positions).
    const pool = new Float32Pool();
    const poisoned = Array.from({ length: 2 * layers }, () => pool.take(3 * heads * 6 * (hiddenSize / heads)).fill(Number.NaN));
    pool.give(...poisoned);
    const seqs = [[bos, 5, 9], [bos, 7, 7], [bos, 40, 2]];
    const run = async (s: OrtDecoderSession) => {
      s.reserve(6);
      await s.step(seqs.map((q) => q.slice(0, 2)));
      return Array.from(await s.step(seqs.map((q) => [q[2]])));
    };
    const pooled = await OrtDecoderSession.open(model.cfg, model.sessions.cross_kv, model.sessions.decoder, embeds, pool);
    const got = await run(pooled);
    const ref = await run(await open());
    expect(got.every(Number.isFinite)).toBe(true);
    expectClose(got, ref);
    expect(pool.outstandingBytes).toBeGreaterThan(0);
    pooled.close();
    expect(pool.outstandingBytes).toBe(0);
    // A second session on the same pool takes only memory the first gave back.
    const free = pool.freeBytes;
    const again = await OrtDecoderSession.open(model.cfg, model.sessions.cross_kv, model.sessions.decoder, embeds, pool);
    expectClose(await run(again), ref);
    again.close();
    expect(pool.freeBytes).toBe(free);
  });

  it('rejects ragged steps and out-of-range selections', async () => {
    const s = await open();
    await expect(s.step([[1, 2], [1], [1, 2]])).rejects.toMatchObject({ code: 'SESSION_INPUT_MISMATCH' });
    expect(() => s.select([0, 3])).toThrow(/indices must lie in \[0, 3\)/);
  });
});
