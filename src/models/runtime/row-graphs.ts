import * as ort from 'onnxruntime-node';
import { CapfiltError } from '../../core/errors.ts';
import { GraphBuilder } from './graph/builder.ts';
import { sessionOptions } from './sessions.ts';
import type { RowProbabilities } from './generation/types.ts';

/**
 * Small graphs over the rows of a row-major float32 matrix (a decoder's logits, [rows, cols]),
 * run by ONNX Runtime's CPU kernels, whose exp is vectorised: a pass of Math.exp over a BLIP
 * vocabulary of 30,524 logits costs about 0.4 ms per row in JS, and the search runs one per row
 * per token (docs/performance.md). Each is its own session, not an output of the decoder graph:
 * ORT runs every node of a graph on every run, fetched or not, and most steps need neither.
 * Always on the CPU (their input is in JS memory), one thread: the decoder's intra-op threads
 * have just finished when they run, and a second pool of them on the same cores made beam steps
 * slower, not faster.
 */
class RowSession {
  private constructor(
    readonly name: string,
    private readonly session: ort.InferenceSession,
  ) {}

  /** `body` adds the graph's nodes and outputs to `g` over the input `x` [rows, cols]. */
  static async create(name: string, threads: number, body: (g: GraphBuilder, x: string) => void): Promise<RowSession> {
    const g = new GraphBuilder(name);
    body(g, g.input('x', 'float32', ['rows', 'cols']));
    // No weights, so no external data (GraphSession would hand ORT an empty data buffer, which it refuses).
    const { model } = g.build(`${name}.onnx.data`);
    try {
      return new RowSession(name, await ort.InferenceSession.create(model, sessionOptions({ device: 'cpu', threads, precision: 'fp32' })));
    } catch (e) {
      throw new CapfiltError('SESSION_RUN_FAILED', `graph ${name}: session creation failed: ${(e as Error).message}`, { graph: name }, { cause: e });
    }
  }

  /** `x` holds (at least) `rows` rows of `cols` values. */
  async run(x: Float32Array, rows: number, cols: number, extra: Record<string, ort.Tensor> = {}): Promise<ort.InferenceSession.ReturnType> {
    if (x.length < rows * cols) throw new CapfiltError('SESSION_INPUT_MISMATCH', `${this.name}: ${x.length} values for ${rows} × ${cols}`, { rows, cols });
    try {
      return await this.session.run({ x: new ort.Tensor('float32', x.subarray(0, rows * cols), [rows, cols]), ...extra });
    } catch (e) {
      throw new CapfiltError('SESSION_RUN_FAILED', `graph ${this.name}: run failed on [${rows}, ${cols}]: ${(e as Error).message}`, { graph: this.name }, { cause: e });
    }
  }

  release(): Promise<void> {
    return this.session.release();
  }
}

/**
 * Each row's log Σ exp: beam search's log-softmax is logits − logSumExp.
 *   in: x float32 [rows, cols]   out: lse float32 [rows]
 */
export class RowLogSumExp {
  private constructor(private readonly s: RowSession) {}

  /** `threads`: ORT intra-op threads (0 = ORT's default, one per core). */
  static async create(threads: number): Promise<RowLogSumExp> {
    return new RowLogSumExp(await RowSession.create('row_log_sum_exp', threads, (g, x) => {
      // max + log Σ exp(x − max), spelled out: ORT's ReduceLogSumExp node computes the same about
      // ten times slower (4.4 against 0.45 ms for 24 × 30,524, one thread), its exp not vectorised.
      const max = g.o('ReduceMax', [x], { axes: [1], keepdims: 1 });
      const sum = g.o('ReduceSum', [g.o('Exp', [g.o('Sub', [x, max])]), g.i64([1])], { keepdims: 0 });
      g.output(g.o('Add', [g.o('Log', [sum]), g.o('Squeeze', [max, g.i64([1])])]), 'lse', 'float32', ['rows']);
    }));
  }

  async run(x: Float32Array, rows: number, cols: number): Promise<Float32Array> {
    return (await this.s.run(x, rows, cols)).lse.data as Float32Array;
  }

  release(): Promise<void> {
    return this.s.release();
  }
}

/**
 * Sampling's probabilities, after the logits processors, with each row's most likely tokens in
 * order, so that a confident step's nucleus is read off them without a pass over the vocabulary.
 *   in:  x float32 [rows, cols], k int64 [1] (min(TOP, cols))
 *   out: p float32 [rows, cols] (a −∞ logit gives exactly 0), top_p float32 [rows, k],
 *        top_i int64 [rows, k] (most likely first; equal values: the lower id first)
 */
export class RowSoftmax {
  /** How many tokens come sorted: a trained captioner's nucleus at top-p 0.9 is usually far smaller. */
  static readonly TOP = 64;

  private constructor(private readonly s: RowSession) {}

  /** `threads`: ORT intra-op threads (0 = ORT's default, one per core). */
  static async create(threads: number): Promise<RowSoftmax> {
    return new RowSoftmax(await RowSession.create('row_softmax', threads, (g, x) => {
      const p = g.o('Softmax', [x], { axis: -1 });
      g.output(p, 'p', 'float32', ['rows', 'cols']);
      const [values, ids] = g.op('TopK', [p, g.input('k', 'int64', [1])], { axis: -1, largest: 1, sorted: 1 }, { count: 2 });
      g.output(values, 'top_p', 'float32', ['rows', 'k']);
      g.output(ids, 'top_i', 'int64', ['rows', 'k']);
    }));
  }

  async run(x: Float32Array, rows: number, cols: number): Promise<RowProbabilities> {
    const k = Math.min(RowSoftmax.TOP, cols);
    const out = await this.s.run(x, rows, cols, { k: new ort.Tensor('int64', BigInt64Array.from([BigInt(k)]), [1]) });
    const ids = Int32Array.from(out.top_i.data as BigInt64Array, Number);
    return { probs: out.p.data as Float32Array, top: { k, probs: out.top_p.data as Float32Array, ids } };
  }

  release(): Promise<void> {
    return this.s.release();
  }
}

/** The row graphs a captioner's decoder session uses (loader.ts creates them with the decoder). */
export interface RowGraphs {
  logSumExp: RowLogSumExp;
  softmax: RowSoftmax;
}

export async function createRowGraphs(threads: number): Promise<RowGraphs> {
  const logSumExp = await RowLogSumExp.create(threads);
  try {
    return { logSumExp, softmax: await RowSoftmax.create(threads) };
  } catch (e) {
    await logSumExp.release();
    throw e;
  }
}

export async function releaseRowGraphs(r: RowGraphs | undefined): Promise<void> {
  if (r) await Promise.all([r.logSumExp.release(), r.softmax.release()]);
}
