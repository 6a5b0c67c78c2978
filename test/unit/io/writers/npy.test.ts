import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { encodeNpy, toFloat16Bits, writeNpy } from '../../../../src/io/writers/npy.ts';

// The reader is Debian's NumPy (python3-numpy, installed by .ci/run), not our code.
const tmp = mkdtempSync(join(tmpdir(), 'capfilt-npy-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function numpy(script: string, ...args: string[]): string {
  return execFileSync('/usr/bin/python3', ['-c', script, ...args], { encoding: 'utf8' });
}

const special = [0, -0, 1, -1, 0.1, 65504, 65520, 1e5, -1e5, 6.1e-5, 5.96e-8, 2.98e-8, 1e-9, Infinity, -Infinity, NaN, 1.00048828125, 1.0009765625, 1.00146484375];

describe('npy writer', () => {
  it('writes float16 matrices numpy loads with the right shape and bit-exact values', async () => {
    let s = 12345;
    const rand = () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 4 - 2;
    const rows = Array.from({ length: 37 }, (_, i) => Float32Array.from({ length: 19 }, (_, j) => (i === 0 ? special[j] : rand() * 10 ** ((i % 7) - 3))));
    const file = join(tmp, 'img_emb_00000.npy');
    await writeNpy(file, rows, 19);
    const f32 = join(tmp, 'src.f32');
    writeFileSync(f32, Buffer.from(new Float32Array(rows.flatMap((r) => [...r])).buffer));
    const out = numpy(`
import sys, numpy as np
a = np.load(sys.argv[1])
ref = np.fromfile(sys.argv[2], dtype='<f4').reshape(a.shape).astype(np.float16)
print(a.dtype, a.shape, a.flags['C_CONTIGUOUS'], bool((a.view(np.uint16) == ref.view(np.uint16)).all()))
`, file, f32);
    expect(out.trim()).toBe('float16 (37, 19) True True');
  });

  it('rounds to nearest even like numpy and pads the header to 64 bytes', () => {
    expect(toFloat16Bits(1)).toBe(0x3c00);
    expect(toFloat16Bits(65504)).toBe(0x7bff);
    expect(toFloat16Bits(65520)).toBe(0x7c00);
    expect(toFloat16Bits(1.00048828125)).toBe(0x3c00);
    expect(toFloat16Bits(1.00146484375)).toBe(0x3c02);
    const bytes = encodeNpy([Float32Array.of(1, 2)], 2, 'float32');
    const headerLen = new DataView(bytes.buffer).getUint16(8, true);
    expect((10 + headerLen) % 64).toBe(0);
    expect(new TextDecoder().decode(bytes.subarray(10, 10 + headerLen))).toMatch(/^\{'descr': '<f4', 'fortran_order': False, 'shape': \(1, 2\), \} *\n$/);
    expect(() => encodeNpy([Float32Array.of(1)], 2)).toThrow(/expected 2/);
  });

  it('writes an empty matrix numpy reads as shape (0, dim)', async () => {
    const file = join(tmp, 'empty.npy');
    await writeNpy(file, [], 512);
    expect(readFileSync(file).length).toBeGreaterThan(0);
    expect(numpy('import sys, numpy as np; a = np.load(sys.argv[1]); print(a.dtype, a.shape)', file).trim()).toBe('float16 (0, 512)');
  });
});
