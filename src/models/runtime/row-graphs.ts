import * as ort from 'onnxruntime-node';
import { CapfiltError } from '../../core/errors.ts';
import { GraphBuilder } from './graph/builder.ts';
import { sessionOptions } from './sessions.ts';

/**
 * Small graphs over the rows of a row-major float32 matrix (a decoder's logits, [rows, cols]),
 * run by ONNX Runtime's CPU kernels, whose exp is vectorised: a pass of Math.exp over a BLIP
 * vocabulary of 30,524 logits costs about 0.4 ms per row in JS, and the search runs one per row
 * per token (docs/performance.md). Each is its own session, not an output of the decoder graph:
 * ORT runs every node of a graph on every run, fetched or not, and most steps need neither.
 * Always on the CPU (their input is in JS memory), one thread: the decoder's intra-op threads
 * have just finished when they run, and a second pool of them on the same cores made beam steps
 * slower, not faster.
 *
 * - `RowGraph.logSumExp`: beam search's log-softmax is logits − logSumExp.
 *     in: x float32 [rows, cols]   out: lse float32 [rows]
 * - `RowGraph.softmax`: sampling's probabilities, after the logits processors.
 *     in: x float32 [rows, cols]   out: p float32 [rows, cols]; a −∞ logit gives exactly 0
 */
export class RowGraph {
  private constructor(
    private readonly name: string,
    private readonly output: string,
    private readonly session: ort.InferenceSession,
  ) {}

  /** `threads`: ORT intra-op threads (0 = ORT's default, one per core). */
  static async logSumExp(threads: number): Promise<RowGraph> {
    return RowGraph.create('row_log_sum_exp', 'lse', threads, (g, x) => {
      // max + log Σ exp(x − max), spelled out: ORT's ReduceLogSumExp node computes the same about
      // ten times slower (4.4 against 0.45 ms for 24 × 30,524, one thread), its exp not vectorised.
      const max = g.o('ReduceMax', [x], { axes: [1], keepdims: 1 });
      const sum = g.o('ReduceSum', [g.o('Exp', [g.o('Sub', [x, max])]), g.i64([1])], { keepdims: 0 });
      return { out: g.o('Add', [g.o('Log', [sum]), g.o('Squeeze', [max, g.i64([1])])]), dims: ['rows'] };
    });
  }

  /** `threads`: ORT intra-op threads (0 = ORT's default, one per core). */
  static async softmax(threads: number): Promise<RowGraph> {
    return RowGraph.create('row_softmax', 'p', threads, (g, x) => ({ out: g.o('Softmax', [x], { axis: -1 }), dims: ['rows', 'cols'] }));
  }

  private static async create(name: string, output: string, threads: number, body: (g: GraphBuilder, x: string) => { out: string; dims: string[] }): Promise<RowGraph> {
    const g = new GraphBuilder(name);
    const { out, dims } = body(g, g.input('x', 'float32', ['rows', 'cols']));
    g.output(out, output, 'float32', dims);
    // No weights, so no external data (GraphSession would hand ORT an empty data buffer, which it refuses).
    const { model } = g.build(`${name}.onnx.data`);
    try {
      return new RowGraph(name, output, await ort.InferenceSession.create(model, sessionOptions({ device: 'cpu', threads, precision: 'fp32' })));
    } catch (e) {
      throw new CapfiltError('SESSION_RUN_FAILED', `graph ${name}: session creation failed: ${(e as Error).message}`, { graph: name }, { cause: e });
    }
  }

  /** `x` holds (at least) `rows` rows of `cols` values; returns the graph's output for them. */
  async run(x: Float32Array, rows: number, cols: number): Promise<Float32Array> {
    if (x.length < rows * cols) throw new CapfiltError('SESSION_INPUT_MISMATCH', `${this.name}: ${x.length} values for ${rows} × ${cols}`, { rows, cols });
    try {
      const out = await this.session.run({ x: new ort.Tensor('float32', x.subarray(0, rows * cols), [rows, cols]) });
      return out[this.output].data as Float32Array;
    } catch (e) {
      throw new CapfiltError('SESSION_RUN_FAILED', `graph ${this.name}: run failed on [${rows}, ${cols}]: ${(e as Error).message}`, { graph: this.name }, { cause: e });
    }
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

/** The row graphs a captioner's decoder session uses (loader.ts creates them with the decoder). */
export interface RowGraphs {
  logSumExp: RowGraph;
  softmax: RowGraph;
}

export async function createRowGraphs(threads: number): Promise<RowGraphs> {
  const logSumExp = await RowGraph.logSumExp(threads);
  try {
    return { logSumExp, softmax: await RowGraph.softmax(threads) };
  } catch (e) {
    await logSumExp.release();
    throw e;
  }
}

export async function releaseRowGraphs(r: RowGraphs | undefined): Promise<void> {
  if (r) await Promise.all([r.logSumExp.release(), r.softmax.release()]);
}
