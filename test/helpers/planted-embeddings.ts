import { Rng } from '../../src/demo/prng.ts';

/**
 * Unit embeddings with planted near-duplicates, for the semantic dedup tests. Distinct rows are
 * a centre plus noise of norm 0.6 (two rows of one centre: cosine about 0.74, far below any
 * dedup threshold); a planted row copies an earlier distinct row plus noise of norm `jitter`
 * (cosine about 1/√(1+jitter²): 0.989 at 0.15). `planted` maps each planted row to its source.
 */
export interface PlantedEmbeddings {
  vectors: Float32Array[];
  planted: Map<number, number>;
}

function gaussian(rng: Rng): number {
  return Math.sqrt(-2 * Math.log(1 - rng.next())) * Math.cos(2 * Math.PI * rng.next());
}

function noise(rng: Rng, dim: number, norm: number): Float32Array {
  const z = Float32Array.from({ length: dim }, () => gaussian(rng));
  const n = Math.hypot(...z);
  return z.map((x) => (x / n) * norm);
}

function unit(v: Float32Array): Float32Array {
  const n = Math.hypot(...v);
  return v.map((x) => x / n);
}

export function plantedEmbeddings(o: { rows: number; dim: number; centres: number; every: number; jitter?: number; seed?: number }): PlantedEmbeddings {
  const rng = new Rng(o.seed ?? 7);
  const centres = Array.from({ length: o.centres }, () => unit(noise(rng, o.dim, 1)));
  const vectors: Float32Array[] = [];
  const planted = new Map<number, number>();
  const distinct: number[] = [];
  for (let i = 0; i < o.rows; i++) {
    if (distinct.length > 0 && (i + 1) % o.every === 0) {
      const source = distinct[Math.floor(rng.next() * distinct.length)];
      const z = noise(rng, o.dim, o.jitter ?? 0.15);
      vectors.push(unit(vectors[source].map((x, k) => x + z[k])));
      planted.set(i, source);
    } else {
      const c = centres[Math.floor(rng.next() * centres.length)];
      const z = noise(rng, o.dim, 0.6);
      vectors.push(unit(c.map((x, k) => x + z[k])));
      distinct.push(i);
    }
  }
  return { vectors, planted };
}
