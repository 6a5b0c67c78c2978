import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RowLogSumExp } from '../../../../src/models/runtime/log-sum-exp.ts';
// The float64 reference: the JS log-sum-exp beam search falls back to.
import { logSumExp as reference } from '../../../../src/models/runtime/generation/processors.ts';

let lse: RowLogSumExp;
beforeAll(async () => {
  lse = await RowLogSumExp.create(1);
});
afterAll(async () => lse.release());

describe('RowLogSumExp', () => {
  it('gives each row its log Σ exp: flat, peaked and far-from-zero rows, as wide as a BLIP vocabulary', async () => {
    const cols = 30524;
    const rows = [
      (i: number) => Math.sin(i * 0.7) * 3,
      (i: number) => (i === 17 ? 25 : -5 + Math.cos(i) * 0.1),
      // Values whose exp overflows float32: the reduction must shift by the row's max.
      (i: number) => 900 + Math.sin(i * 1.3) * 40,
      (i: number) => -700 + (i % 13),
    ];
    const x = new Float32Array(rows.length * cols);
    rows.forEach((f, r) => { for (let i = 0; i < cols; i++) x[r * cols + i] = f(i); });
    const got = await lse.run(x, rows.length, cols);
    expect(got).toHaveLength(rows.length);
    rows.forEach((_, r) => {
      const want = reference(x.subarray(r * cols, (r + 1) * cols));
      expect(Math.abs(got[r] - want)).toBeLessThan(Math.max(1, Math.abs(want)) * 2e-6);
    });
  });

  it('refuses fewer values than rows × cols with a coded error', async () => {
    await expect(lse.run(new Float32Array(5), 2, 3)).rejects.toMatchObject({ code: 'SESSION_INPUT_MISMATCH' });
  });
});
