import * as ort from 'onnxruntime-node';
import { CapfiltError } from '../../core/errors.ts';
import { GraphBuilder } from './graph/builder.ts';
import { sessionOptions } from './sessions.ts';

/**
 * Inner products of two row-major float32 matrices, A·Bᵀ, as one ONNX Gemm (transB) run by
 * ONNX Runtime's CPU kernels (MLAS). Semantic deduplication is two such products: points ×
 * centroids (k-means assignment) and, inside a cluster, members × members (the pairwise cosine
 * matrix SemDeDup thresholds). Measured side by side on 512-d vectors (bench:dedup), this ran
 * about nine times faster than usearch's exactSearch (SIMD dot products one pair at a time), and
 * building an HNSW index costs more than the exact products (usearch: about 500 rows/s at 512-d
 * here) — see docs/dedup.md. Runs on the calling thread, like every ORT CPU run.
 */
export class InnerProducts {
  private constructor(private readonly session: ort.InferenceSession) {}

  /** `threads`: ORT intra-op threads (0 = ORT's default, one per core). */
  static async create(threads: number): Promise<InnerProducts> {
    const g = new GraphBuilder('inner_products');
    const a = g.input('a', 'float32', ['n', 'd']);
    const b = g.input('b', 'float32', ['m', 'd']);
    g.output(g.o('Gemm', [a, b], { transB: 1 }), 'products', 'float32', ['n', 'm']);
    // No weights, so no external data (GraphSession would hand ORT an empty data buffer, which it refuses).
    const { model } = g.build('inner_products.onnx.data');
    try {
      return new InnerProducts(await ort.InferenceSession.create(model, sessionOptions({ device: 'cpu', threads, precision: 'fp32' })));
    } catch (e) {
      throw new CapfiltError('SESSION_RUN_FAILED', `graph inner_products: session creation failed: ${(e as Error).message}`, { graph: 'inner_products' }, { cause: e });
    }
  }

  /**
   * `a` holds n rows and `b` m rows of `dim` values; returns the n × m products, row-major
   * (products[i·m + j] = a_i · b_j), written into `out` when given (length ≥ n·m).
   */
  async run(a: Float32Array, n: number, b: Float32Array, m: number, dim: number, out?: Float32Array): Promise<Float32Array> {
    const target = out && out.length >= n * m ? out.subarray(0, n * m) : new Float32Array(n * m);
    const feeds = { a: new ort.Tensor('float32', a.subarray(0, n * dim), [n, dim]), b: new ort.Tensor('float32', b.subarray(0, m * dim), [m, dim]) };
    try {
      // ORT writes the products into `target` (the caller's buffer); the binding also returns a
      // fresh copy of them, which is ignored.
      await this.session.run(feeds, { products: new ort.Tensor('float32', target, [n, m]) });
    } catch (e) {
      throw new CapfiltError('SESSION_RUN_FAILED', `graph inner_products: run failed on [${n}, ${dim}] × [${m}, ${dim}]: ${(e as Error).message}`, { graph: 'inner_products' }, { cause: e });
    }
    return target;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
