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

/** One float32's bits, reused by every conversion (a fresh array per value made 1M × 512 rows take minutes). */
const scratch = new Float32Array(1);
const scratchBits = new Uint32Array(scratch.buffer);

/** IEEE 754 binary16 of a float, round to nearest even (what numpy's astype(float16) does). */
export function toFloat16Bits(value: number): number {
  scratch[0] = value;
  const x = scratchBits[0];
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

/** The float value of every binary16 bit pattern (index = the 16 bits), for decoding whole matrices. */
let halfTable: Float32Array | null = null;
export function float16Table(): Float32Array {
  if (halfTable) return halfTable;
  halfTable = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >>> 10) & 0x1f;
    const mant = h & 0x3ff;
    halfTable[h] = exp === 0 ? sign * mant * 2 ** -24 : exp === 0x1f ? (mant ? NaN : sign * Infinity) : sign * (1 + mant / 1024) * 2 ** (exp - 15);
  }
  return halfTable;
}

export interface NpyMatrix {
  dtype: NpyDtype;
  rows: number;
  dim: number;
  /** float16: the raw binary16 bits (decode with float16Table); float32: the values. */
  data: Uint16Array | Float32Array;
}

/**
 * Reads a 2-d float16/float32 C-order matrix from .npy bytes (format 1.0, 2.0 or 3.0). Throws a
 * plain Error naming what is wrong; callers wrap it with the file's name.
 */
export function decodeNpy(bytes: Uint8Array): NpyMatrix {
  const magic = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59];
  if (bytes.length < 10 || magic.some((b, i) => bytes[i] !== b)) throw new Error('not a .npy file (no \\x93NUMPY magic)');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const major = bytes[6];
  if (major < 1 || major > 3) throw new Error(`unsupported .npy version ${major}.${bytes[7]}`);
  const headerLen = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = major === 1 ? 10 : 12;
  if (start + headerLen > bytes.length) throw new Error('.npy header runs past the end of the file');
  const header = new TextDecoder().decode(bytes.subarray(start, start + headerLen));
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  const dtype = (Object.keys(DESCR) as NpyDtype[]).find((k) => DESCR[k] === descr);
  if (!dtype) throw new Error(`.npy dtype ${descr ?? '(none)'} is not ${Object.values(DESCR).join(' or ')}`);
  if (fortran !== 'False') throw new Error('.npy matrix is not in C order');
  const dims = (shape ?? '').split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  if (dims.length !== 2 || dims.some((d) => !Number.isInteger(d) || d < 0)) throw new Error(`.npy shape (${shape ?? ''}) is not (rows, dim)`);
  const [rows, dim] = dims;
  const bytesPer = dtype === 'float16' ? 2 : 4;
  const offset = start + headerLen;
  const length = rows * dim * bytesPer;
  if (bytes.length - offset !== length) throw new Error(`.npy data is ${bytes.length - offset} bytes, shape (${rows}, ${dim}) needs ${length}`);
  // Typed views need aligned offsets; a pooled or sliced Buffer may not give one, so copy then.
  const aligned = (bytes.byteOffset + offset) % bytesPer === 0;
  const src = aligned ? bytes : bytes.slice();
  const at = aligned ? bytes.byteOffset + offset : offset;
  const data = dtype === 'float16' ? new Uint16Array(src.buffer, at, rows * dim) : new Float32Array(src.buffer, at, rows * dim);
  return { dtype, rows, dim, data };
}
