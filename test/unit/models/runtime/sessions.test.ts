import { describe, expect, it } from 'vitest';
import { CapfiltError } from '../../../../src/core/errors.ts';
import { GraphBuilder, graphDataBuffer } from '../../../../src/models/runtime/graph/builder.ts';
import { GraphSession, cudaAvailable, f32, i64, sessionOptions } from '../../../../src/models/runtime/sessions.ts';

const cpu = { device: 'cpu', threads: 1, precision: 'fp32' as const };

/** y[b, s, :] = x[b, s, :] @ W + table[ids[b, s]]: one float and one int64 input sharing dims. */
async function tinySession(): Promise<GraphSession> {
  const g = new GraphBuilder('tiny');
  const x = g.input('x', 'float32', ['batch', 'seq', 4]);
  const ids = g.input('ids', 'int64', ['batch', 'seq']);
  const w = g.weight('w', Float32Array.from({ length: 4 * 80 }, (_, i) => (i % 7) - 3), [4, 80]);
  const table = g.weight('table', Float32Array.from({ length: 3 * 80 }, (_, i) => i), [3, 80]);
  g.output(g.o('Add', [g.o('MatMul', [x, w]), g.o('Gather', [table, ids], { axis: 0 })]), 'y', 'float32', ['batch', 'seq', 80]);
  const built = g.build('tiny.onnx.data');
  return GraphSession.create('tiny', { model: built.model, dataFile: built.dataFile, data: graphDataBuffer(built) }, cpu);
}

async function mismatch(p: Promise<unknown>): Promise<CapfiltError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof CapfiltError) return e;
    throw e;
  }
  throw new Error('no error');
}

describe('checked ONNX Runtime sessions', () => {
  it('runs a built graph with external data', async () => {
    const s = await tinySession();
    const out = await s.run({ x: f32(new Float32Array([1, 0, 0, 0]), [1, 1, 4]), ids: i64([2], [1, 1]) });
    const y = out.y.data as Float32Array;
    expect(out.y.dims).toEqual([1, 1, 80]);
    expect(y[0]).toBe(-3 + 160);
    expect(y[1]).toBe(-2 + 161);
    await s.release();
  });

  it('reports missing, extra, mistyped and mis-shaped inputs with the session spec', async () => {
    const s = await tinySession();
    const x = f32(new Float32Array(8), [1, 2, 4]);
    const missing = await mismatch(s.run({ x }));
    expect(missing.code).toBe('SESSION_INPUT_MISMATCH');
    expect(missing.message).toContain('missing input ids');
    expect(missing.message).toContain('session expects x:float32[batch,seq,4] ids:int64[batch,seq]');
    const extra = await mismatch(s.run({ x, ids: i64([0, 1], [1, 2]), z: x }));
    expect(extra.message).toContain('unexpected input z');
    const dtype = await mismatch(s.run({ x, ids: f32(new Float32Array(2), [1, 2]) }));
    expect(dtype.message).toContain('ids: dtype float32, expected int64');
    const fixed = await mismatch(s.run({ x: f32(new Float32Array(6), [1, 2, 3]), ids: i64([0, 1], [1, 2]) }));
    expect(fixed.message).toContain('x: dim 2 is 3, expected 4');
    const symbol = await mismatch(s.run({ x, ids: i64([0, 1, 2], [1, 3]) }));
    expect(symbol.message).toContain('ids: dim 1 (seq) is 3 but x has seq = 2');
    const rank = await mismatch(s.run({ x, ids: i64([0, 1], [2]) }));
    expect(rank.message).toContain('ids: rank 1, expected 2');
    await s.release();
  });

  it('wraps ORT run failures with the inputs', async () => {
    const s = await tinySession();
    const e = await mismatch(s.run({ x: f32(new Float32Array(4), [1, 1, 4]), ids: i64([7], [1, 1]) }));
    expect(e.code).toBe('SESSION_RUN_FAILED');
    expect(e.message).toContain('ids:int64[1,1]');
    await s.release();
  });

  it('turns ORT\'s intra-op spinning off only when asked, and such a session runs', async () => {
    expect(sessionOptions(cpu).extra).toBeUndefined();
    expect(sessionOptions({ ...cpu, spinning: true }).extra).toBeUndefined();
    expect(sessionOptions({ ...cpu, spinning: false }).extra).toEqual({ session: { intra_op: { allow_spinning: '0' } } });
    const g = new GraphBuilder('still');
    const x = g.input('x', 'float32', [2, 4]);
    g.output(g.o('MatMul', [x, g.weight('w', Float32Array.from({ length: 4 * 64 }, (_, i) => i % 5), [4, 64])]), 'y', 'float32', [2, 64]);
    const built = g.build('still.onnx.data');
    const s = await GraphSession.create('still', { model: built.model, dataFile: built.dataFile, data: graphDataBuffer(built) }, { ...cpu, threads: 2, spinning: false });
    const y = (await s.run({ x: f32(new Float32Array([1, 1, 1, 1, 0, 0, 0, 0]), [2, 4]) })).y.data as Float32Array;
    expect([y[0], y[1], y[64]]).toEqual([0 + 4 + 3 + 2, 1 + 0 + 4 + 3, 0]);
    await s.release();
  });

  it('refuses CUDA clearly where this onnxruntime-node build has no CUDA provider, and bad device names', () => {
    const bad = (() => { try { sessionOptions({ ...cpu, device: 'gpu0' }); } catch (e) { return e as CapfiltError; } return null; })();
    expect(bad?.code).toBe('DEVICE_UNAVAILABLE');
    if (cudaAvailable()) return;
    const e = (() => { try { sessionOptions({ ...cpu, device: 'cuda:1' }); } catch (x) { return x as CapfiltError; } return null; })();
    expect(e?.code).toBe('DEVICE_UNAVAILABLE');
    expect(e?.message).toContain('no CUDA execution provider');
    expect(sessionOptions({ ...cpu, threads: 2 }).intraOpNumThreads).toBe(2);
  });
});
