import * as ort from 'onnxruntime-node';
import { CapfiltError } from '../../core/errors.ts';
import { GraphBuilder } from './graph/builder.ts';
import { sessionOptions } from './sessions.ts';

/**
 * Each row's log Σ exp of a row-major float32 matrix, run by ONNX Runtime's CPU kernels (their
 * exp is vectorised): beam search's log-softmax is logits − logSumExp. JS's log-softmax over beam
 * search's 24 rows × 30,524 logits (a pass of Math.exp) took 8.5 ms per token where this graph
 * takes about 0.5 (docs/performance.md). Its own session, not an output of the decoder graph: ORT
 * runs every node of a graph on every run, fetched or not, and greedy and nucleus steps have no
 * use for it. One thread: the decoder's intra-op threads have just finished when it runs, and a
 * second pool of them on the same cores made beam steps slower, not faster.
 *   in:  x    float32 [rows, cols]
 *   out: lse  float32 [rows]
 */
export class RowLogSumExp {
  private constructor(private readonly session: ort.InferenceSession) {}

  /** `threads`: ORT intra-op threads (0 = ORT's default, one per core). Always on the CPU: its input is in JS memory. */
  static async create(threads: number): Promise<RowLogSumExp> {
    const g = new GraphBuilder('row_log_sum_exp');
    const x = g.input('x', 'float32', ['rows', 'cols']);
    // max + log Σ exp(x − max), spelled out: ORT's ReduceLogSumExp node computes the same about
    // ten times slower (4.4 against 0.45 ms for 24 × 30,524, one thread), its exp not vectorised.
    const max = g.o('ReduceMax', [x], { axes: [1], keepdims: 1 });
    const sum = g.o('ReduceSum', [g.o('Exp', [g.o('Sub', [x, max])]), g.i64([1])], { keepdims: 0 });
    g.output(g.o('Add', [g.o('Log', [sum]), g.o('Squeeze', [max, g.i64([1])])]), 'lse', 'float32', ['rows']);
    // No weights, so no external data (GraphSession would hand ORT an empty data buffer, which it refuses).
    const { model } = g.build('row_log_sum_exp.onnx.data');
    try {
      return new RowLogSumExp(await ort.InferenceSession.create(model, sessionOptions({ device: 'cpu', threads, precision: 'fp32' })));
    } catch (e) {
      throw new CapfiltError('SESSION_RUN_FAILED', `graph row_log_sum_exp: session creation failed: ${(e as Error).message}`, { graph: 'row_log_sum_exp' }, { cause: e });
    }
  }

  /** `x` holds `rows` rows of `cols` values; returns their log-sum-exps. */
  async run(x: Float32Array, rows: number, cols: number): Promise<Float32Array> {
    if (x.length < rows * cols) throw new CapfiltError('SESSION_INPUT_MISMATCH', `row_log_sum_exp: ${x.length} values for ${rows} × ${cols}`, { rows, cols });
    try {
      const out = await this.session.run({ x: new ort.Tensor('float32', x.subarray(0, rows * cols), [rows, cols]) });
      return out.lse.data as Float32Array;
    } catch (e) {
      throw new CapfiltError('SESSION_RUN_FAILED', `graph row_log_sum_exp: run failed on [${rows}, ${cols}]: ${(e as Error).message}`, { graph: 'row_log_sum_exp' }, { cause: e });
    }
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
