import { Rng } from '../../demo/prng.ts';
import type { InnerProducts } from '../../models/runtime/inner-products.ts';
import { gather, gatherRange, type VectorSet } from './vectors.ts';

/**
 * Spherical k-means (cosine k-means: unit centroids, points go to the centroid of highest inner
 * product), as SemDeDup clusters its embeddings. Neither npm vector library that installs here
 * has k-means (usearch's JS binding exposes search only; faiss-node does not install), so this is
 * the small textbook version, shaped like faiss's `Kmeans(spherical=True)`:
 *   - trained on a seeded sample of at most `samplePerCluster` points per centroid (faiss: 256),
 *     because an iteration costs points × clusters × dim;
 *   - initial centroids: `clusters` distinct sample points (faiss's random init);
 *   - an empty cluster keeps its previous centroid; training stops early when no sample point
 *     changes cluster;
 *   - then every point is assigned once, remembering its cosine to its centroid (SemDeDup orders
 *     a cluster by it).
 * The products are Gemm runs (`InnerProducts`) over chunks of points. Deterministic for a seed.
 */
export interface KMeansOptions {
  clusters: number;
  iterations: number;
  samplePerCluster: number;
  seed: number;
}

export interface KMeansResult {
  clusters: number;
  dim: number;
  /** clusters × dim, unit rows. */
  centroids: Float32Array;
  /** Cluster of each point. */
  assignment: Int32Array;
  /** Cosine of each point to its centroid. */
  similarity: Float32Array;
  /** Training iterations run (≤ options.iterations). */
  iterations: number;
  sampleSize: number;
}

export type ProgressFn = (phase: string, done: number, total: number) => void;

/** Points per Gemm run: 4096 × 1000 products are 16 MB. */
const CHUNK = 4096;

/** Lets a progress bar's timer draw between synchronous ORT runs. */
export const yieldToLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

function seededSample(count: number, size: number, seed: number): Int32Array {
  const rng = new Rng(seed);
  const all = Int32Array.from({ length: count }, (_, i) => i);
  // Partial Fisher-Yates: the first `size` entries are a uniform sample without replacement.
  for (let i = 0; i < size; i++) {
    const j = i + Math.floor(rng.next() * (count - i));
    const t = all[i];
    all[i] = all[j];
    all[j] = t;
  }
  return all.subarray(0, size).slice();
}

/**
 * Assigns points to their nearest centroid. `rows(start, end, out)` fills `out` with the
 * normalised rows [start, end) of the points; results go to assignment/similarity at [start, end).
 */
async function assign(
  ip: InnerProducts,
  centroids: Float32Array,
  k: number,
  dim: number,
  count: number,
  rows: (start: number, end: number, out: Float32Array) => void,
  assignment: Int32Array,
  similarity: Float32Array,
  progress?: (done: number) => void,
): Promise<number> {
  const points = new Float32Array(CHUNK * dim);
  const products = new Float32Array(CHUNK * k);
  let changed = 0;
  for (let start = 0; start < count; start += CHUNK) {
    const end = Math.min(count, start + CHUNK);
    rows(start, end, points);
    await ip.run(points, end - start, centroids, k, dim, products);
    for (let i = 0; i < end - start; i++) {
      let best = 0;
      let bestSim = -Infinity;
      for (let c = 0, o = i * k; c < k; c++, o++) {
        if (products[o] > bestSim) {
          bestSim = products[o];
          best = c;
        }
      }
      if (assignment[start + i] !== best) changed++;
      assignment[start + i] = best;
      similarity[start + i] = bestSim;
    }
    progress?.(end);
    await yieldToLoop();
  }
  return changed;
}

export async function sphericalKMeans(v: VectorSet, ip: InnerProducts, o: KMeansOptions, progress?: ProgressFn): Promise<KMeansResult> {
  const { dim, count } = v;
  const k = Math.max(1, Math.min(o.clusters, count));
  const sampleSize = Math.min(count, Math.max(k, k * o.samplePerCluster));
  const sample = seededSample(count, sampleSize, o.seed);
  const centroids = new Float32Array(k * dim);
  gather(v, sample, 0, k, centroids);
  const sampleRows = (start: number, end: number, out: Float32Array) => void gather(v, sample, start, end, out);
  const sampleAssignment = new Int32Array(sampleSize).fill(-1);
  const sampleSimilarity = new Float32Array(sampleSize);
  let iterations = 0;
  const sums = new Float64Array(k * dim);
  const point = new Float32Array(dim);
  for (let it = 0; it < o.iterations; it++) {
    const changed = await assign(ip, centroids, k, dim, sampleSize, sampleRows, sampleAssignment, sampleSimilarity, (d) => progress?.('k-means', it * sampleSize + d, o.iterations * sampleSize));
    iterations++;
    if (changed === 0) break;
    sums.fill(0);
    for (let i = 0; i < sampleSize; i++) {
      gather(v, sample, i, i + 1, point);
      const base = sampleAssignment[i] * dim;
      for (let j = 0; j < dim; j++) sums[base + j] += point[j];
    }
    for (let c = 0; c < k; c++) {
      let norm = 0;
      for (let j = 0; j < dim; j++) norm += sums[c * dim + j] ** 2;
      if (norm === 0) continue;
      const inv = 1 / Math.sqrt(norm);
      for (let j = 0; j < dim; j++) centroids[c * dim + j] = sums[c * dim + j] * inv;
    }
  }
  // Converged early: the training phase is done all the same.
  progress?.('k-means', o.iterations * sampleSize, o.iterations * sampleSize);
  const assignment = new Int32Array(count).fill(-1);
  const similarity = new Float32Array(count);
  await assign(ip, centroids, k, dim, count, (s, e, out) => void gatherRange(v, s, e, out), assignment, similarity, (d) => progress?.('assign', d, count));
  return { clusters: k, dim, centroids, assignment, similarity, iterations, sampleSize };
}
