import type { InnerProducts } from '../../models/runtime/inner-products.ts';
import { sphericalKMeans, yieldToLoop, type KMeansOptions, type KMeansResult, type ProgressFn } from './kmeans.ts';
import { gather, type VectorSet } from './vectors.ts';

/**
 * SemDeDup (Abbas et al., 2023) over a set of image embeddings: spherical k-means, then inside
 * each cluster the exact pairwise cosine matrix, thresholded. Which row of a group is kept:
 *   the members of a cluster are ordered by cosine to their centroid, lowest first (SemDeDup's
 *   default keeps the example farthest from the centroid), ties by row order; walking that
 *   order, a row is dropped when its cosine to an already kept row of its cluster is at or
 *   above `threshold`, and names the most similar such kept row (ties: the earlier one);
 *   otherwise it is kept.
 * So no two kept rows of one cluster reach the threshold, and every dropped row names a kept
 * row it reaches. (SemDeDup itself drops a row that reaches any earlier row, dropped or not,
 * which can drop a chain a → b → c whose ends are far apart; comparing with kept rows only
 * keeps c there, and leaves every dropped row a kept representative.) Pairs split across two
 * clusters are not compared, as in SemDeDup; more clusters are faster and miss more of them.
 */
export interface SemanticDedupOptions extends KMeansOptions {
  /** Cosine at or above which two rows are near-duplicates, in (0, 1]. */
  threshold: number;
}

export interface SemanticDedupResult {
  /** The row each row duplicates (a kept row), or -1 for a kept row. */
  duplicateOf: Int32Array;
  /** Cosine to duplicateOf (NaN for kept rows). */
  cosine: Float32Array;
  dropped: number;
  kmeans: KMeansResult;
  /** Cluster sizes: largest, and the pairs compared inside clusters (Σ n·(n-1)/2). */
  largestCluster: number;
  pairs: number;
  timings_ms: { kmeans: number; pairwise: number };
}

/** Products per Gemm run inside a cluster (2^24 floats = 64 MiB), and rows per run. */
const BLOCK_PRODUCTS = 1 << 24;
const BLOCK_ROWS = 512;

/** Members of every cluster, each ordered farthest from its centroid first (ties by row). */
function orderedClusters(km: KMeansResult): { members: Int32Array; starts: Int32Array } {
  const counts = new Int32Array(km.clusters + 1);
  for (const c of km.assignment) counts[c + 1]++;
  for (let c = 0; c < km.clusters; c++) counts[c + 1] += counts[c];
  const starts = counts.slice();
  const fill = counts.slice(0, km.clusters);
  const members = new Int32Array(km.assignment.length);
  for (let i = 0; i < km.assignment.length; i++) members[fill[km.assignment[i]]++] = i;
  for (let c = 0; c < km.clusters; c++) {
    const part = members.subarray(starts[c], starts[c + 1]);
    part.sort((a, b) => km.similarity[a] - km.similarity[b] || a - b);
  }
  return { members, starts };
}

export async function semanticDedup(v: VectorSet, ip: InnerProducts, o: SemanticDedupOptions, progress?: ProgressFn): Promise<SemanticDedupResult> {
  if (!(o.threshold > 0 && o.threshold <= 1)) throw new RangeError(`semantic dedup threshold ${o.threshold} is not in (0, 1]`);
  const t0 = performance.now();
  const km = await sphericalKMeans(v, ip, o, progress);
  const t1 = performance.now();
  const duplicateOf = new Int32Array(v.count).fill(-1);
  const cosine = new Float32Array(v.count).fill(NaN);
  const { members, starts } = orderedClusters(km);
  const dim = v.dim;
  let largest = 0;
  for (let c = 0; c < km.clusters; c++) largest = Math.max(largest, starts[c + 1] - starts[c]);
  const vectors = new Float32Array(largest * dim);
  const kept = new Int32Array(largest);
  let products = new Float32Array(0);
  let dropped = 0;
  let pairs = 0;
  let done = 0;
  for (let c = 0; c < km.clusters; c++) {
    const n = starts[c + 1] - starts[c];
    if (n === 0) continue;
    pairs += (n * (n - 1)) / 2;
    gather(v, members, starts[c], starts[c + 1], vectors);
    let keptCount = 0;
    // Rows in blocks: a block's rows against every row before its end (the rows they may
    // duplicate), so about half the n × n matrix is computed; 512-row blocks keep each Gemm large.
    const block = Math.max(1, Math.min(n, BLOCK_ROWS, Math.floor(BLOCK_PRODUCTS / n)));
    for (let b0 = 0; b0 < n; b0 += block) {
      const b1 = Math.min(n, b0 + block);
      if (products.length < (b1 - b0) * b1) products = new Float32Array(Math.min(BLOCK_PRODUCTS, block * n));
      if (n > 1) await ip.run(vectors.subarray(b0 * dim), b1 - b0, vectors, b1, dim, products);
      for (let j = b0; j < b1; j++) {
        const row = (j - b0) * b1;
        let best = -1;
        let bestSim = o.threshold;
        for (let q = 0; q < keptCount; q++) {
          const s = products[row + kept[q]];
          if (s > bestSim || (s === bestSim && best === -1)) {
            best = kept[q];
            bestSim = s;
          }
        }
        if (best === -1) kept[keptCount++] = j;
        else {
          duplicateOf[members[starts[c] + j]] = members[starts[c] + best];
          cosine[members[starts[c] + j]] = bestSim;
          dropped++;
        }
      }
    }
    done += n;
    progress?.('pairwise', done, v.count);
    if (n > 1) await yieldToLoop();
  }
  const t2 = performance.now();
  return { duplicateOf, cosine, dropped, kmeans: km, largestCluster: largest, pairs, timings_ms: { kmeans: Math.round(t1 - t0), pairwise: Math.round(t2 - t1) } };
}
