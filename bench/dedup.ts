/**
 * `npm run bench:dedup [-- --sizes 100000,1000000 --dim 512 --threshold 0.95 --threads 0 --cluster-factor 1 --no-compare]`:
 * semantic dedup (src/pipeline/dedup: spherical k-means + exact pairwise cosines inside clusters,
 * the products as ONNX Runtime Gemm runs) on synthetic embeddings with planted near-duplicates.
 * Prints one JSON object.
 *
 * Data: `rows / 1000` random unit centres; a distinct row is a centre plus noise of relative norm
 * 0.6 (two rows of one centre: cosine ≈ 0.74); every 20th row is a planted near-duplicate, an
 * earlier distinct row plus noise of relative norm 0.15 (cosine ≈ 0.989), float16 as stored.
 * Each size runs in its own child process so that its peak RSS (getrusage maxrss) is its own;
 * `data_bytes` is the float16 matrix the child holds before dedup starts.
 *   recall          planted (copy, source) pairs of which at least one row was dropped
 *   dropped         rows filtered as near-duplicates; expected_drops = Σ (planted group size − 1)
 *   false_drops     dropped rows whose duplicate_of lies outside their planted group
 * `compare` (skipped with --no-compare) measures the libraries weighed for the inner products, in
 * this process, side by side: 4096 points × 1000 centroids (one k-means assignment chunk) with
 * ORT Gemm and with usearch's exactSearch (k = 1), and usearch's HNSW index build rate.
 * Every timing records `others_cpu_share`, the share of the machine other processes used
 * meanwhile (this machine is shared: figures measured at a high share are lower bounds).
 */
import { spawn } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import usearch from 'usearch';
import { float16Table, toFloat16Bits } from '../src/io/writers/npy.ts';
import { InnerProducts } from '../src/models/runtime/inner-products.ts';
import { semanticDedup } from '../src/pipeline/dedup/semantic.ts';
import { gatherRange, vectorSet } from '../src/pipeline/dedup/vectors.ts';
import { othersShare } from './clip.ts';
import { round, timeBest } from './timing.ts';

interface Args {
  sizes: number[];
  dim: number;
  threshold: number;
  threads: number;
  /** clusters = ⌈factor · √rows⌉ (capfilt dedup's default is factor 1). */
  clusterFactor: number;
  compare: boolean;
  child: number | null;
}

function parseArgs(argv: string[]): Args {
  const value = (flag: string) => {
    const i = argv.indexOf(flag);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  return {
    sizes: (value('--sizes') ?? '100000,1000000').split(',').map(Number),
    dim: Number(value('--dim') ?? 512),
    threshold: Number(value('--threshold') ?? 0.95),
    threads: Number(value('--threads') ?? 0),
    clusterFactor: Number(value('--cluster-factor') ?? 1),
    compare: !argv.includes('--no-compare'),
    child: value('--child') !== undefined ? Number(value('--child')) : null,
  };
}

/** xorshift32: the data generator needs 512 M random signs at 1M × 512, fast. */
function xorshift(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  };
}

/** Adds `scale`·(random ±1 vector) to `v`. */
function addSigns(v: Float32Array, scale: number, next: () => number): void {
  for (let j = 0; j < v.length; j += 32) {
    const bits = next();
    for (let b = 0; b < 32 && j + b < v.length; b++) v[j + b] += bits & (1 << b) ? scale : -scale;
  }
}

function storeUnit(half: Uint16Array, row: number, v: Float32Array): void {
  let s = 0;
  for (const x of v) s += x * x;
  const inv = 1 / Math.sqrt(s);
  for (let j = 0; j < v.length; j++) half[row * v.length + j] = toFloat16Bits(v[j] * inv);
}

/** The synthetic set: float16 rows and, per row, the distinct row it was planted from (-1: none). */
function generate(rows: number, dim: number, seed = 0x5eed): { half: Uint16Array; source: Int32Array; planted: number } {
  const next = xorshift(seed);
  const centres = Math.max(1, Math.round(rows / 1000));
  const centre = new Float32Array(centres * dim);
  const unit = 1 / Math.sqrt(dim);
  for (let c = 0; c < centres; c++) addSigns(centre.subarray(c * dim, (c + 1) * dim), unit, next);
  const half = new Uint16Array(rows * dim);
  const source = new Int32Array(rows).fill(-1);
  const table = float16Table();
  const v = new Float32Array(dim);
  let distinct = 0;
  const distinctRows = new Int32Array(rows);
  let planted = 0;
  for (let i = 0; i < rows; i++) {
    if (distinct > 0 && (i + 1) % 20 === 0) {
      const s = distinctRows[next() % distinct];
      for (let j = 0; j < dim; j++) v[j] = table[half[s * dim + j]];
      addSigns(v, 0.15 * unit, next);
      source[i] = s;
      planted++;
    } else {
      const c = next() % centres;
      v.set(centre.subarray(c * dim, (c + 1) * dim));
      addSigns(v, 0.6 * unit, next);
      distinctRows[distinct++] = i;
    }
    storeUnit(half, i, v);
  }
  return { half, source, planted };
}

async function child(n: number, a: Args): Promise<Record<string, unknown>> {
  const g0 = performance.now();
  const { half, source, planted } = generate(n, a.dim);
  const generateS = (performance.now() - g0) / 1000;
  const rssBefore = process.memoryUsage().rss;
  const ip = await InnerProducts.create(a.threads);
  const clusters = Math.ceil(a.clusterFactor * Math.sqrt(n));
  const t0 = performance.now();
  const { value: r, others } = await othersShare(() =>
    semanticDedup(vectorSet(half, n, a.dim), ip, { threshold: a.threshold, clusters, iterations: 10, samplePerCluster: 64, seed: 0 }),
  );
  const seconds = (performance.now() - t0) / 1000;
  await ip.release();
  const root = (i: number) => (source[i] >= 0 ? source[i] : i);
  let found = 0;
  for (let i = 0; i < n; i++) if (source[i] >= 0 && (r.duplicateOf[i] >= 0 || r.duplicateOf[source[i]] >= 0)) found++;
  let falseDrops = 0;
  for (let i = 0; i < n; i++) if (r.duplicateOf[i] >= 0 && root(r.duplicateOf[i]) !== root(i)) falseDrops++;
  const groupSize = new Map<number, number>();
  for (let i = 0; i < n; i++) if (source[i] >= 0) groupSize.set(source[i], (groupSize.get(source[i]) ?? 1) + 1);
  const expectedDrops = [...groupSize.values()].reduce((s, x) => s + x - 1, 0);
  return {
    rows: n,
    dim: a.dim,
    threshold: a.threshold,
    clusters: r.kmeans.clusters,
    kmeans_sample: r.kmeans.sampleSize,
    kmeans_iterations: r.kmeans.iterations,
    largest_cluster: r.largestCluster,
    pairs_in_clusters: r.pairs,
    seconds: round(seconds, 2),
    kmeans_s: round(r.timings_ms.kmeans / 1000, 2),
    pairwise_s: round(r.timings_ms.pairwise / 1000, 2),
    rows_per_s: Math.round(n / seconds),
    others_cpu_share: others,
    peak_rss_mb: Math.round((process.resourceUsage().maxRSS * 1024) / 2 ** 20),
    rss_before_dedup_mb: Math.round(rssBefore / 2 ** 20),
    data_bytes: half.byteLength,
    planted_pairs: planted,
    recall: round(found / Math.max(1, planted), 4),
    dropped: r.dropped,
    expected_drops: expectedDrops,
    false_drops: falseDrops,
    generate_s: round(generateS, 1),
  };
}

function runChild(n: number, a: Args): Promise<Record<string, unknown>> {
  const args = [...process.execArgv, fileURLToPath(import.meta.url), '--child', String(n), '--dim', String(a.dim), '--threshold', String(a.threshold), '--threads', String(a.threads), '--cluster-factor', String(a.clusterFactor)];
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.on('close', (code) => (code === 0 ? resolve(JSON.parse(out.trim().split('\n').pop()!)) : reject(new Error(`bench child for ${n} rows exited ${code}`))));
  });
}

/** The inner-product candidates side by side on one k-means assignment chunk, and HNSW's build rate. */
async function compare(a: Args): Promise<Record<string, unknown>> {
  const points = 4096;
  const centroids = 1000;
  const { half } = generate(points + centroids, a.dim, 0xc0ffee);
  const v = vectorSet(half, points + centroids, a.dim);
  const p = gatherRange(v, 0, points, new Float32Array(points * a.dim));
  const c = gatherRange(v, points, points + centroids, new Float32Array(centroids * a.dim));
  const flops = 2 * points * centroids * a.dim;
  const ip = await InnerProducts.create(a.threads);
  const out = new Float32Array(points * centroids);
  const gemm = await othersShare(() => timeBest(3, () => ip.run(p, points, c, centroids, a.dim, out)));
  await ip.release();
  const threads = a.threads || 0;
  const exact = await othersShare(() => timeBest(3, async () => usearch.exactSearch(c, p, a.dim, 1, usearch.MetricKind.IP, threads)));
  const hnswRows = 20_000;
  const { half: hh } = generate(hnswRows, a.dim, 0xbeef);
  const hv = gatherRange(vectorSet(hh, hnswRows, a.dim), 0, hnswRows, new Float32Array(hnswRows * a.dim));
  const index = new usearch.Index({ dimensions: a.dim, metric: usearch.MetricKind.IP, quantization: usearch.ScalarKind.F32, connectivity: 16, expansion_add: 0, expansion_search: 0, multi: false });
  const keys = BigUint64Array.from({ length: hnswRows }, (_, i) => BigInt(i));
  const hnsw = await othersShare(() => timeBest(1, async () => index.add(keys, hv, threads)));
  return {
    chunk: `${points} points × ${centroids} centroids × ${a.dim}`,
    ort_gemm: { seconds: round(gemm.value, 4), gflops: round(flops / gemm.value / 1e9, 1), others_cpu_share: gemm.others },
    usearch_exact_search_k1: { seconds: round(exact.value, 4), gflops: round(flops / exact.value / 1e9, 1), others_cpu_share: exact.others },
    ort_speedup: round(exact.value / gemm.value, 1),
    usearch_hnsw_build: { rows: hnswRows, seconds: round(hnsw.value, 2), rows_per_s: Math.round(hnswRows / hnsw.value), others_cpu_share: hnsw.others },
  };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const a = parseArgs(process.argv.slice(2));
  if (a.child !== null) process.stdout.write(`${JSON.stringify(await child(a.child, a))}\n`);
  else {
    const sizes = [];
    for (const n of a.sizes) sizes.push(await runChild(n, a));
    const result = { bench: 'dedup', node: process.version, cpus: (await import('node:os')).cpus().length, threads: a.threads, cluster_factor: a.clusterFactor, sizes, ...(a.compare ? { compare: await compare(a) } : {}) };
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  }
}
