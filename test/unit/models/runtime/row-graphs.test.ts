import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RowSoftmax, createRowGraphs, releaseRowGraphs, type RowGraphs } from '../../../../src/models/runtime/row-graphs.ts';
// The float64 references: the JS log-sum-exp and softmax the search falls back to.
import { logSumExp as referenceLse } from '../../../../src/models/runtime/generation/processors.ts';

let graphs: RowGraphs;
beforeAll(async () => {
  graphs = await createRowGraphs(1);
});
afterAll(async () => releaseRowGraphs(graphs));

const cols = 30524;
/** Flat, peaked and far-from-zero rows, as wide as a BLIP vocabulary. */
const rowFns = [
  (i: number) => Math.sin(i * 0.7) * 3,
  (i: number) => (i === 17 ? 25 : -5 + Math.cos(i) * 0.1),
  // Values whose exp overflows float32: the reduction must shift by the row's max.
  (i: number) => 900 + Math.sin(i * 1.3) * 40,
  (i: number) => -700 + (i % 13),
];
function matrix(fns: ((i: number) => number)[]): Float32Array {
  const x = new Float32Array(fns.length * cols);
  fns.forEach((f, r) => { for (let i = 0; i < cols; i++) x[r * cols + i] = f(i); });
  return x;
}

describe('RowLogSumExp', () => {
  it('gives each row its log Σ exp', async () => {
    const x = matrix(rowFns);
    const got = await graphs.logSumExp.run(x, rowFns.length, cols);
    expect(got).toHaveLength(rowFns.length);
    rowFns.forEach((_, r) => {
      const want = referenceLse(x.subarray(r * cols, (r + 1) * cols));
      expect(Math.abs(got[r] - want)).toBeLessThan(Math.max(1, Math.abs(want)) * 2e-6);
    });
  });

  it('refuses fewer values than rows × cols with a coded error', async () => {
    await expect(graphs.logSumExp.run(new Float32Array(5), 2, 3)).rejects.toMatchObject({ code: 'SESSION_INPUT_MISMATCH' });
  });
});

describe('RowSoftmax', () => {
  it('gives each row its softmax, a −∞ logit exactly 0 (a forbidden token stays forbidden)', async () => {
    // Forbidden tokens as the processors leave them: min length's eos, top-k's tail.
    const fns = [...rowFns, (i: number) => (i % 3 === 0 ? -Infinity : Math.cos(i * 0.37) * 6)];
    const x = matrix(fns);
    const got = (await graphs.softmax.run(x, fns.length, cols)).probs;
    expect(got).toHaveLength(fns.length * cols);
    fns.forEach((_, r) => {
      const row = x.subarray(r * cols, (r + 1) * cols);
      const lse = referenceLse(row);
      let sum = 0;
      let worst = 0;
      for (let i = 0; i < cols; i++) {
        const p = got[r * cols + i];
        sum += p;
        if (row[i] === -Infinity) {
          expect(p).toBe(0);
          continue;
        }
        const want = Math.exp(row[i] - lse);
        // Relative to the value where it is not tiny: ORT's vectorised exp is within a few float32 ulps.
        worst = Math.max(worst, Math.abs(p - want) / Math.max(want, 1e-30));
      }
      expect(worst).toBeLessThan(1e-5);
      expect(Math.abs(sum - 1)).toBeLessThan(1e-5);
    });
  });

  it('gives each row\'s 64 most likely tokens in order, equal ones by id, −∞ ones never before others', async () => {
    // Ties (a repeating pattern), a row whose tail is forbidden, a peaked row.
    const fns = [(i: number) => (i % 7) * 0.5, (i: number) => (i < 30 ? Math.sin(i) : -Infinity), (i: number) => (i === 900 ? 12 : Math.cos(i))];
    const x = matrix(fns);
    const { probs, top } = await graphs.softmax.run(x, fns.length, cols);
    expect(top!.k).toBe(RowSoftmax.TOP);
    fns.forEach((_, r) => {
      const row = probs.subarray(r * cols, (r + 1) * cols);
      const want = Array.from({ length: cols }, (_, i) => i).sort((a, b) => row[b] - row[a] || a - b).slice(0, 64);
      expect(Array.from(top!.ids.subarray(r * 64, (r + 1) * 64))).toEqual(want);
      expect(Array.from(top!.probs.subarray(r * 64, (r + 1) * 64))).toEqual(want.map((i) => row[i]));
    });
  });

  it('gives all tokens as the top when a row has fewer than 64', async () => {
    const x = Float32Array.from({ length: 2 * 10 }, (_, i) => (i * 37) % 11);
    const { top } = await graphs.softmax.run(x, 2, 10);
    expect(top!.k).toBe(10);
    expect(new Set(top!.ids.subarray(0, 10)).size).toBe(10);
  });

  it('refuses fewer values than rows × cols with a coded error', async () => {
    await expect(graphs.softmax.run(new Float32Array(5), 2, 3)).rejects.toMatchObject({ code: 'SESSION_INPUT_MISMATCH' });
  });
});
