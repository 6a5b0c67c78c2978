/**
 * Seeded random numbers for sampling. Every sampled sequence gets its own generator, seeded
 * from (seed, sample key, return index), so a caption depends only on those three values and
 * not on which other images happened to share the batch or on a retry's batch order.
 *
 * xoshiro128** (Blackman & Vigna) seeded through SHA-256 of the three values.
 */
import { createHash } from 'node:crypto';

export interface Rng {
  /** Uniform in [0, 1) with 53 random bits. */
  next(): number;
}

export function sampleRng(seed: number, key: string, index: number): Rng {
  const h = createHash('sha256').update(`capfilt-sample\0${seed}\0${key}\0${index}`).digest();
  const s = new Uint32Array([h.readUInt32LE(0), h.readUInt32LE(4), h.readUInt32LE(8), h.readUInt32LE(12)]);
  if ((s[0] | s[1] | s[2] | s[3]) === 0) s[0] = 1;
  const u32 = (): number => {
    const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  };
  return { next: () => ((u32() >>> 5) * 67108864 + (u32() >>> 6)) / 9007199254740992 };
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}
