import { GraphBuilder, graphDataBuffer } from '../src/models/runtime/graph/builder.ts';
import { GraphSession, f32 } from '../src/models/runtime/sessions.ts';
import type { RuntimeOptions } from '../src/models/runtime/types.ts';
import { spread } from './random-weights.ts';
import { round, timeBest } from './timing.ts';

/**
 * The rate this process reads memory that does not fit in cache, as a decode step does, GB/s:
 * a [rows, 768]·[768, 3072]·[3072, 768] GEMM chain over 12 distinct weight pairs (226 MB, the
 * decoder's FFN) at 8 rows (`gemm_gbps`, batch 8) and at one row (`gemv_gbps`), and a
 * ReduceSum over 256 MB (`reduce_gbps`). A floor takes the best of the three. The one-row chain
 * is there because the 8-row one measures MLAS's kernel as much as the memory: on the AVX-512
 * VNNI EPYC VMs the one-row chain streamed the same weights at 44–47 GB/s where 8 rows read
 * them at 24–30 (the same session, one process, alternating), so a floor from the 8-row rate
 * was a floor of that kernel, not of the machine.
 *
 * The data is pseudo-random, never a constant fill: on the shared VMs this project measures on,
 * a weight filled with one value streamed at 37–45 GB/s where the same shapes with random
 * values ran at 26–28 (one run, side by side; identical pages are likely merged by the host),
 * so a constant fill overstates the rate a real model's weights are read at.
 * Each weight's spread keeps the activations' scale through the 24 products (variance 1/K per
 * element): smaller weights shrink them into denormals within a few layers, which Intel cores
 * multiply a hundred times slower (the chain read 2 GB/s on a Xeon with ±1/K weights).
 */
export interface StreamRates {
  gemm_gbps: number;
  gemv_gbps: number;
  reduce_gbps: number;
}

/** The best of the measured rates: the floor's bandwidth. */
export const bestRate = (r: StreamRates): number => Math.max(r.gemm_gbps, r.gemv_gbps, r.reduce_gbps);

export async function streamBandwidth(runtime: RuntimeOptions): Promise<StreamRates> {
  const g = new GraphBuilder('stream_gemm');
  let y = g.input('a', 'float32', ['rows', 768]);
  for (let l = 0; l < 12; l++) {
    y = g.o('MatMul', [y, g.weight(`w1_${l}`, spread(768 * 3072, Math.sqrt(12 / 768), 2 * l + 1), [768, 3072])]);
    y = g.o('MatMul', [y, g.weight(`w2_${l}`, spread(3072 * 768, Math.sqrt(12 / 3072), 2 * l + 2), [3072, 768])]);
  }
  g.output(y, 'y', 'float32', ['rows', 768]);
  const built = g.build('stream.data');
  const s = await GraphSession.create('stream_gemm', { model: built.model, dataFile: built.dataFile, data: graphDataBuffer(built) }, runtime);
  const chain = async (rows: number): Promise<number> => {
    const a = f32(new Float32Array(rows * 768).fill(0.5), [rows, 768]);
    await s.run({ a });
    return timeBest(6, () => s.run({ a }));
  };
  const gemmS = await chain(8);
  const gemvS = await chain(1);
  await s.release();
  const r = new GraphBuilder('stream_reduce');
  const n = 64 * 1024 * 1024;
  // The second (small) weight only gives the graph external data to load.
  const sum = (t: string) => r.o('ReduceSum', [t], { keepdims: 0 });
  r.output(r.o('Add', [sum(r.input('x', 'float32', [n])), sum(r.weight('pad', new Float32Array(4096), [4096]))]), 'y', 'float32', []);
  const rb = r.build('reduce.data');
  const rs = await GraphSession.create('stream_reduce', { model: rb.model, dataFile: rb.dataFile, data: graphDataBuffer(rb) }, runtime);
  const x = f32(spread(n, 2e-3, 99), [n]);
  await rs.run({ x });
  const reduceS = await timeBest(6, () => rs.run({ x }));
  await rs.release();
  const chainBytes = 12 * 2 * 768 * 3072 * 4;
  return { gemm_gbps: round(chainBytes / gemmS / 1e9, 1), gemv_gbps: round(chainBytes / gemvS / 1e9, 1), reduce_gbps: round((n * 4) / reduceS / 1e9, 1) };
}
