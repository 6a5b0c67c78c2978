import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isCapfiltError } from '../../../../../src/core/errors.ts';
import { openSafetensors } from '../../../../../src/models/runtime/weights/safetensors.ts';
import { f32Bytes, writeSafetensors } from '../../../../helpers/safetensors-writer.ts';

const dir = mkdtempSync(join(tmpdir(), 'capfilt-st-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function expectCode(fn: () => unknown, code: string, ...fragments: string[]): void {
  try {
    fn();
  } catch (e) {
    expect(isCapfiltError(e), String(e)).toBe(true);
    expect((e as { code: string }).code).toBe(code);
    for (const f of fragments) expect((e as Error).message).toContain(f);
    return;
  }
  throw new Error(`expected ${code}`);
}

describe('safetensors reader', () => {
  it('reads F32, F16 and BF16 tensors widened to float32', () => {
    const file = join(dir, 'ok.safetensors');
    const half = new Uint16Array([0x3c00, 0xc000, 0x3555, 0x7c00]); // 1, -2, ~0.333, inf
    const bf = new Uint16Array([0x3f80, 0xc040]); // 1, -3
    writeSafetensors(file, {
      'a.weight': { dtype: 'F32', shape: [2, 2], bytes: f32Bytes([1, 2, 3, 4]) },
      'b.half': { dtype: 'F16', shape: [4], bytes: new Uint8Array(half.buffer) },
      'c.bf16': { dtype: 'BF16', shape: [2], bytes: new Uint8Array(bf.buffer) },
    });
    const st = openSafetensors(file);
    expect(st.keys().sort()).toEqual(['a.weight', 'b.half', 'c.bf16']);
    expect(st.shape('a.weight')).toEqual([2, 2]);
    expect([...st.get('a.weight').data]).toEqual([1, 2, 3, 4]);
    const h = st.get('b.half');
    expect(h.sourceDtype).toBe('F16');
    expect(h.data[0]).toBe(1);
    expect(h.data[1]).toBe(-2);
    expect(h.data[2]).toBeCloseTo(1 / 3, 3);
    expect(h.data[3]).toBe(Infinity);
    expect([...st.get('c.bf16').data]).toEqual([1, -3]);
    expectCode(() => st.get('nope'), 'WEIGHTS_MISSING_KEYS', 'nope', file);
    st.close();
  });

  it('rejects a header length past the end of the file', () => {
    const file = join(dir, 'hdr.safetensors');
    writeSafetensors(file, { x: { dtype: 'F32', shape: [1], bytes: f32Bytes([1]) } }, { headerLength: 10_000n });
    expectCode(() => openSafetensors(file), 'WEIGHTS_TRUNCATED', file, 'header length 10000');
  });

  it('rejects a file shorter than its tensors', () => {
    const file = join(dir, 'short.safetensors');
    writeSafetensors(file, { x: { dtype: 'F32', shape: [4], bytes: f32Bytes([1, 2, 3, 4]) } }, { truncateBy: 4 });
    expectCode(() => openSafetensors(file), 'WEIGHTS_TRUNCATED', file, '"x"');
  });

  it('rejects offsets out of range, reversed or overlapping', () => {
    const a = join(dir, 'range.safetensors');
    writeSafetensors(a, { x: { dtype: 'F32', shape: [1], bytes: f32Bytes([1]), offsets: [4, 8] } });
    expectCode(() => openSafetensors(a), 'WEIGHTS_TRUNCATED', '"x"', '[4, 8]');
    const b = join(dir, 'rev.safetensors');
    writeSafetensors(b, { x: { dtype: 'F32', shape: [0], bytes: f32Bytes([1]), offsets: [4, 0] } });
    expectCode(() => openSafetensors(b), 'WEIGHTS_TENSOR_INVALID', 'reversed');
    const c = join(dir, 'overlap.safetensors');
    writeSafetensors(c, {
      x: { dtype: 'F32', shape: [2], bytes: f32Bytes([1, 2]), offsets: [0, 8] },
      y: { dtype: 'F32', shape: [2], bytes: f32Bytes([3, 4]), offsets: [4, 12] },
    });
    expectCode(() => openSafetensors(c), 'WEIGHTS_TENSOR_INVALID', 'overlap', '"x"', '"y"');
  });

  it('rejects dtype/shape disagreeing with the byte length, and unknown dtypes', () => {
    const a = join(dir, 'mismatch.safetensors');
    writeSafetensors(a, { w: { dtype: 'F16', shape: [3], bytes: f32Bytes([1, 2, 3]) } });
    expectCode(() => openSafetensors(a), 'WEIGHTS_TENSOR_INVALID', '"w"', 'F16', 'needs 6 bytes', 'span 12');
    const b = join(dir, 'dtype.safetensors');
    writeSafetensors(b, { w: { dtype: 'Q4', shape: [1], bytes: f32Bytes([1]) } });
    expectCode(() => openSafetensors(b), 'WEIGHTS_TENSOR_INVALID', 'unsupported dtype');
  });

  it('rejects a header that is not JSON and a file too short for the length prefix', () => {
    const a = join(dir, 'json.safetensors');
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(8n);
    writeFileSync(a, Buffer.concat([len, Buffer.from('{"x": [1')]));
    expectCode(() => openSafetensors(a), 'WEIGHTS_HEADER_INVALID', a);
    const b = join(dir, 'tiny.safetensors');
    writeFileSync(b, Buffer.from([1, 2, 3]));
    expectCode(() => openSafetensors(b), 'WEIGHTS_TRUNCATED', '3 bytes');
  });
});
