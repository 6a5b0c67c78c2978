import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { float16Table, toFloat16Bits } from '../../../../src/io/writers/npy.ts';
import { InnerProducts } from '../../../../src/models/runtime/inner-products.ts';
import { sphericalKMeans } from '../../../../src/pipeline/dedup/kmeans.ts';
import { semanticDedup } from '../../../../src/pipeline/dedup/semantic.ts';
import { vectorSet, type VectorSet } from '../../../../src/pipeline/dedup/vectors.ts';
import { plantedEmbeddings } from '../../../helpers/planted-embeddings.ts';

let ip: InnerProducts;
beforeAll(async () => void (ip = await InnerProducts.create(1)));
afterAll(async () => ip.release());

function toSet(vectors: Float32Array[]): VectorSet {
  const dim = vectors[0].length;
  const half = new Uint16Array(vectors.length * dim);
  vectors.forEach((v, i) => v.forEach((x, j) => (half[i * dim + j] = toFloat16Bits(x))));
  return vectorSet(half, vectors.length, dim);
}

/** Cosine of two stored rows in float64, as the test's own reference. */
function cosine(v: VectorSet, a: number, b: number): number {
  const t = float16Table();
  let s = 0;
  for (let j = 0; j < v.dim; j++) s += t[v.half[a * v.dim + j]] * t[v.half[b * v.dim + j]];
  return s * v.invNorm[a] * v.invNorm[b];
}

const options = { iterations: 10, samplePerCluster: 64, seed: 3 };

describe('InnerProducts', () => {
  it('computes A·Bᵀ into a given buffer', async () => {
    const out = new Float32Array(8).fill(-9);
    const r = await ip.run(new Float32Array([1, 2, 3, 4, 5, 6]), 2, new Float32Array([1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 1]), 4, 3, out);
    expect(r.buffer).toBe(out.buffer);
    expect(Array.from(r)).toEqual([1, 2, 3, 6, 4, 5, 6, 15]);
  });
});

describe('spherical k-means', () => {
  it('recovers well-separated groups, the same way for the same seed', async () => {
    const { vectors } = plantedEmbeddings({ rows: 300, dim: 32, centres: 3, every: 1000, seed: 5 });
    // Three tight groups: each row pulled hard towards one of three orthogonal axes.
    const groups = vectors.map((_, i) => i % 3);
    const data = vectors.map((v, i) => v.map((x, j) => x * 0.2 + (j === groups[i] ? 1 : 0)));
    const v = toSet(data);
    const a = await sphericalKMeans(v, ip, { ...options, clusters: 3 });
    const b = await sphericalKMeans(v, ip, { ...options, clusters: 3 });
    expect(Array.from(a.assignment)).toEqual(Array.from(b.assignment));
    const label = new Map<number, number>();
    for (let i = 0; i < 300; i++) {
      if (!label.has(groups[i])) label.set(groups[i], a.assignment[i]);
      expect(a.assignment[i]).toBe(label.get(groups[i]));
    }
    expect(new Set(label.values()).size).toBe(3);
    for (let i = 0; i < 300; i++) expect(a.similarity[i]).toBeGreaterThan(0.8);
  });
});

describe('semanticDedup', () => {
  it('with one cluster, equals the greedy rule computed here pair by pair', async () => {
    const { vectors } = plantedEmbeddings({ rows: 240, dim: 24, centres: 5, every: 4, seed: 9 });
    const v = toSet(vectors);
    const t = 0.95;
    const r = await semanticDedup(v, ip, { ...options, clusters: 1, threshold: t });
    // Reference: farthest from the centroid first, each row against the rows kept before it.
    const order = Array.from({ length: v.count }, (_, i) => i).sort((a, b) => r.kmeans.similarity[a] - r.kmeans.similarity[b] || a - b);
    const kept: number[] = [];
    const expected = new Array<number>(v.count).fill(-1);
    for (const j of order) {
      let best = -1;
      let bestSim = -Infinity;
      for (const i of kept) {
        const s = cosine(v, i, j);
        if (s >= t && s > bestSim) [best, bestSim] = [i, s];
      }
      if (best === -1) kept.push(j);
      else expected[j] = best;
    }
    expect(expected.filter((x) => x >= 0).length).toBeGreaterThan(40);
    expect(Array.from(r.duplicateOf)).toEqual(expected);
    expect(r.dropped).toBe(v.count - kept.length);
    for (let j = 0; j < v.count; j++) if (expected[j] >= 0) expect(r.cosine[j]).toBeCloseTo(cosine(v, j, expected[j]), 5);
  });

  it('with several clusters: kept rows of one cluster never reach the threshold, each dropped row names a kept row of its cluster', async () => {
    const { vectors, planted } = plantedEmbeddings({ rows: 600, dim: 32, centres: 8, every: 5, seed: 4 });
    const v = toSet(vectors);
    const r = await semanticDedup(v, ip, { ...options, clusters: 12, threshold: 0.95 });
    const cluster = r.kmeans.assignment;
    for (let j = 0; j < v.count; j++) {
      const of = r.duplicateOf[j];
      if (of < 0) continue;
      expect(r.duplicateOf[of]).toBe(-1);
      expect(cluster[of]).toBe(cluster[j]);
      expect(cosine(v, j, of)).toBeGreaterThanOrEqual(0.95 - 1e-6);
    }
    const keptRows = Array.from({ length: v.count }, (_, i) => i).filter((i) => r.duplicateOf[i] < 0);
    for (const a of keptRows) for (const b of keptRows) if (a < b && cluster[a] === cluster[b]) expect(cosine(v, a, b)).toBeLessThan(0.95 + 1e-6);
    // Most planted pairs land in one cluster and are found; distinct rows are never dropped.
    const found = [...planted].filter(([c, s]) => r.duplicateOf[c] >= 0 || r.duplicateOf[s] >= 0).length;
    expect(found / planted.size).toBeGreaterThan(0.85);
    const root = (i: number) => planted.get(i) ?? i;
    for (let j = 0; j < v.count; j++) if (r.duplicateOf[j] >= 0) expect(root(r.duplicateOf[j])).toBe(root(j));
  });

  it('keeps the far ends of a chain and drops its middle, naming the earlier kept row on a tie', async () => {
    // a·b = c·b = 0.96 ≥ 0.95 (mirror images, so exactly equal) but a·c = 0.8432: b, nearest the
    // centroid, comes last and reaches both kept ends equally; it names a, the earlier.
    const s = Math.sqrt(1 - 0.96 ** 2);
    const v = toSet([new Float32Array([s, 0.96, 0]), new Float32Array([0, 1, 0]), new Float32Array([-s, 0.96, 0])]);
    const r = await semanticDedup(v, ip, { ...options, clusters: 1, threshold: 0.95 });
    expect(Array.from(r.duplicateOf)).toEqual([-1, 0, -1]);
    expect(r.cosine[1]).toBeCloseTo(0.96, 3);
  });

  it('treats an all-zero embedding as nobody\'s duplicate and refuses thresholds outside (0, 1]', async () => {
    const v = toSet([new Float32Array([0, 0]), new Float32Array([0, 0]), new Float32Array([1, 0])]);
    expect(Array.from((await semanticDedup(v, ip, { ...options, clusters: 1, threshold: 0.5 })).duplicateOf)).toEqual([-1, -1, -1]);
    for (const threshold of [0, 1.01, Number.NaN]) await expect(semanticDedup(v, ip, { ...options, clusters: 1, threshold })).rejects.toThrow('is not in (0, 1]');
  });
});
