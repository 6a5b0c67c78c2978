import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeNpy, encodeNpy, float16Table, toFloat16Bits } from '../../../../src/io/writers/npy.ts';

const tmp = mkdtempSync(join(tmpdir(), 'capfilt-npy-decode-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('npy reader', () => {
  it('float16Table inverts toFloat16Bits for every finite binary16 value', () => {
    const table = float16Table();
    let checked = 0;
    const wrong: number[] = [];
    for (let h = 0; h < 65536; h++) {
      if (Number.isNaN(table[h])) continue;
      // -0 and +0 are distinct bit patterns of equal value; the sign survives the round trip.
      if (toFloat16Bits(table[h]) !== h) wrong.push(h);
      checked++;
    }
    expect(wrong).toEqual([]);
    expect(checked).toBe(65536 - 2046);
    expect([table[0x3c00], table[0xc000], table[0x7bff], table[0x0001]]).toEqual([1, -2, 65504, 2 ** -24]);
  });

  it('reads what NumPy writes (version 1 and 2 headers, float16 and float32)', () => {
    // Debian's NumPy writes the files: our reader against another writer.
    execFileSync('/usr/bin/python3', ['-c', `
import sys, numpy as np
a = (np.arange(15).reshape(5, 3) / 8 - 1).astype(np.float32)
np.save(sys.argv[1] + '/h.npy', a.astype(np.float16))
np.save(sys.argv[1] + '/f.npy', a)
with open(sys.argv[1] + '/v2.npy', 'wb') as f:
    np.lib.format.write_array(f, a.astype(np.float16), version=(2, 0))
`, tmp]);
    const expected = Array.from({ length: 15 }, (_, i) => i / 8 - 1);
    const f = decodeNpy(readFileSync(join(tmp, 'f.npy')));
    expect([f.dtype, f.rows, f.dim]).toEqual(['float32', 5, 3]);
    expect(Array.from(f.data)).toEqual(expected);
    for (const name of ['h.npy', 'v2.npy']) {
      const h = decodeNpy(readFileSync(join(tmp, name)));
      expect([h.dtype, h.rows, h.dim]).toEqual(['float16', 5, 3]);
      expect(Array.from(h.data)).toEqual(expected.map(toFloat16Bits));
    }
  });

  it('round-trips our own writer, also from an unaligned buffer', () => {
    const rows = [new Float32Array([0.5, -0.25]), new Float32Array([1, 2])];
    const bytes = encodeNpy(rows, 2, 'float16');
    const shifted = new Uint8Array(bytes.length + 1);
    shifted.set(bytes, 1);
    for (const b of [bytes, shifted.subarray(1)]) {
      const m = decodeNpy(b);
      expect([m.rows, m.dim, Array.from(m.data as Uint16Array).map((x) => float16Table()[x])]).toEqual([2, 2, [0.5, -0.25, 1, 2]]);
    }
    expect(decodeNpy(encodeNpy([], 4)).rows).toBe(0);
  });

  it('refuses files it cannot read as a (rows, dim) float matrix, saying why', () => {
    const good = encodeNpy([new Float32Array([1, 2])], 2);
    const withHeader = (from: string, to: string) => {
      const b = good.slice();
      const text = new TextDecoder().decode(b.subarray(10, 10 + new DataView(b.buffer).getUint16(8, true)));
      b.set(new TextEncoder().encode(text.replace(from, to)), 10);
      return b;
    };
    expect(() => decodeNpy(new TextEncoder().encode('PK not numpy'))).toThrow('not a .npy file');
    expect(() => decodeNpy(withHeader("'<f2'", "'<i2'"))).toThrow('dtype <i2 is not <f2 or <f4');
    expect(() => decodeNpy(withHeader('False', 'True '))).toThrow('not in C order');
    expect(() => decodeNpy(withHeader('(1, 2)', '(2,)  '))).toThrow('is not (rows, dim)');
    expect(() => decodeNpy(good.subarray(0, good.length - 1))).toThrow('data is 3 bytes, shape (1, 2) needs 4');
  });
});
