import { writeFileAtomic } from './atomic.ts';

/**
 * NumPy `.npy` (format version 1.0) for embedding matrices, the layout clip-retrieval writes
 * (`img_emb_00000.npy`: float16, rows × dim, C order) so its index builder and notebooks read
 * capfilt's output unchanged:
 *   magic "\x93NUMPY", version 1.0, uint16 header length, an ASCII dict padded with spaces to a
 *   multiple of 64 bytes (newline last), then the little-endian data.
 */

export type NpyDtype = 'float16' | 'float32';

const DESCR: Record<NpyDtype, string> = { float16: '<f2', float32: '<f4' };

/** IEEE 754 binary16 of a float, round to nearest even (what numpy's astype(float16) does). */
export function toFloat16Bits(value: number): number {
  const f32 = new Float32Array([value]);
  const x = new Uint32Array(f32.buffer)[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    let m = mant >>> shift;
    const rest = mant & ((1 << shift) - 1);
    if (rest > half || (rest === half && (m & 1))) m++;
    return sign | m;
  }
  let m = mant >>> 13;
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (m & 1))) {
    m++;
    if (m === 0x400) {
      m = 0;
      e++;
      if (e >= 0x1f) return sign | 0x7c00;
    }
  }
  return sign | (e << 10) | m;
}

export function encodeNpy(rows: readonly Float32Array[], dim: number, dtype: NpyDtype = 'float16'): Uint8Array {
  for (const [i, r] of rows.entries()) {
    if (r.length !== dim) throw new RangeError(`npy row ${i} has ${r.length} values, expected ${dim}`);
  }
  const dict = `{'descr': '${DESCR[dtype]}', 'fortran_order': False, 'shape': (${rows.length}, ${dim}), }`;
  const unpadded = 10 + dict.length + 1;
  const headerText = `${dict}${' '.repeat((64 - (unpadded % 64)) % 64)}\n`;
  const bytesPer = dtype === 'float16' ? 2 : 4;
  const out = new Uint8Array(10 + headerText.length + rows.length * dim * bytesPer);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0], 0);
  new DataView(out.buffer).setUint16(8, headerText.length, true);
  out.set(new TextEncoder().encode(headerText), 10);
  const view = new DataView(out.buffer, 10 + headerText.length);
  let o = 0;
  for (const r of rows) {
    for (const v of r) {
      if (dtype === 'float16') view.setUint16(o, toFloat16Bits(v), true);
      else view.setFloat32(o, v, true);
      o += bytesPer;
    }
  }
  return out;
}

/** Writes the matrix atomically (temp file + rename), so a reader never sees half a file. */
export async function writeNpy(file: string, rows: readonly Float32Array[], dim: number, dtype: NpyDtype = 'float16'): Promise<void> {
  await writeFileAtomic(file, encodeNpy(rows, dim, dtype));
}
