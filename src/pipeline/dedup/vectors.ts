import { float16Table } from '../../io/writers/npy.ts';

/**
 * The embeddings semantic dedup works on, as stored: binary16 bits, row-major, one row per kept
 * row of the output (1M × 512 is 1 GiB, half of what float32 would hold). Rows are normalised
 * when they are read out (`gather`), so cosines are inner products; an all-zero row reads as
 * zeros and is nobody's duplicate.
 */
export interface VectorSet {
  count: number;
  dim: number;
  half: Uint16Array;
  /** 1/‖row‖ of each row as stored (0 for a zero row). */
  invNorm: Float32Array;
}

export function vectorSet(half: Uint16Array, count: number, dim: number): VectorSet {
  if (half.length !== count * dim) throw new RangeError(`vector set: ${half.length} values for ${count} × ${dim}`);
  const table = float16Table();
  const invNorm = new Float32Array(count);
  for (let r = 0; r < count; r++) {
    let s = 0;
    for (let o = r * dim, e = o + dim; o < e; o++) {
      const v = table[half[o]];
      s += v * v;
    }
    invNorm[r] = s > 0 && Number.isFinite(s) ? 1 / Math.sqrt(s) : 0;
  }
  return { count, dim, half, invNorm };
}

/** Normalised float32 copies of rows `indices[start..end)` into `out` (row after row). */
export function gather(v: VectorSet, indices: ArrayLike<number>, start: number, end: number, out: Float32Array): Float32Array {
  const table = float16Table();
  const { dim, half, invNorm } = v;
  let w = 0;
  for (let k = start; k < end; k++) {
    const r = indices[k];
    const scale = invNorm[r];
    for (let o = r * dim, e = o + dim; o < e; o++) out[w++] = table[half[o]] * scale;
  }
  return out;
}

/** Normalised float32 copies of the consecutive rows [start, end). */
export function gatherRange(v: VectorSet, start: number, end: number, out: Float32Array): Float32Array {
  const table = float16Table();
  const { dim, half, invNorm } = v;
  let w = 0;
  for (let r = start; r < end; r++) {
    const scale = invNorm[r];
    for (let o = r * dim, e = o + dim; o < e; o++) out[w++] = table[half[o]] * scale;
  }
  return out;
}
