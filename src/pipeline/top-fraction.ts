import { hashTag, type RedisClient } from '../core/redis.ts';
import { scoreOf, type RowRecord } from '../core/records.ts';

/**
 * DataComp's CLIP-score baseline (`clip.topFraction`): keep the texts whose CLIP score is in the
 * top fraction f of the whole run.
 *
 * What is ranked: every CLIP-scored text of the run's rows that are neither failed nor trusted —
 * the web text and each synthetic caption alike, each an (image, text) pair as in DataComp, which
 * ranks pairs by image–text CLIP score (with no caption stage these are exactly DataComp's pairs).
 * The rule is independent of the others: the population is every scored text, whatever BLIP or
 * `clip.minScore` decide, and a text is kept only when every rule passes.
 *
 * The threshold: with N ranked texts and k = ⌈f·N⌉ (at least 1), t is the k-th highest score; a
 * text passes when its score ≥ t. Ties: every text scoring exactly t passes, so the kept count is
 * k plus the other texts equal to t (f = 1 keeps everything).
 *
 * A streaming run cannot know t until its last shard is scored. While it streams, each clip job
 * adds its shard's scores to a histogram shared in Redis and decides its rows with the threshold
 * of the merged histogram (provisional; rows are marked so). When every shard is written, the
 * run computes t exactly from the parquet scores and re-decides the output in place
 * (src/run/rethreshold.ts), so the final kept set is exactly the top fraction.
 *
 * Why a fixed-bin histogram and not a t-digest/KLL/DDSketch: the CLIP score is a cosine, bounded
 * in [-1, 1], so 2000 bins of width 0.001 cover it with a known absolute error; bin counts merge
 * exactly and in any order with HINCRBY (one Redis hash, no read-modify-write of a serialised
 * digest, no client-side merge), and a retried shard is counted once by a marker field in the
 * same hash. npm's `tdigest` (0.1.3) is unmaintained and t-digest merges are order-dependent
 * approximations; DDSketch (`@datadog/sketches-js`) is maintained and mergeable, but its relative
 * accuracy in value is the wrong geometry for a bounded score (needlessly fine near 0, coarser
 * around 0.3, a second store for negatives), and sharing it through Redis would use only its
 * index mapping. Error of the provisional threshold over the texts counted so far: the
 * histogram's threshold is the lower edge of the bin holding the k-th highest score, so it is at
 * most one bin width (0.001) below the exact threshold of those texts, and it keeps at most the
 * other texts of that bin in addition. Its distance from the final threshold is dominated by how
 * representative the shards counted so far are (the first shard sees only its own texts).
 */
export const TOP_FRACTION_BINS = 2000;
export const TOP_FRACTION_BIN_WIDTH = 2 / TOP_FRACTION_BINS;

/** The bin of a score: [-1 + i·w, -1 + (i+1)·w), scores outside [-1, 1] clamped into the end bins. */
const BINS_PER_UNIT = TOP_FRACTION_BINS / 2;

export function binOf(score: number): number {
  const i = Math.floor((score + 1) * BINS_PER_UNIT);
  return Math.min(TOP_FRACTION_BINS - 1, Math.max(0, i));
}

/** The bin's lower edge, as a short decimal (0.547, not 0.5469999999999999). */
export function binLowerEdge(bin: number): number {
  return (bin - BINS_PER_UNIT) / BINS_PER_UNIT;
}

/** k = ⌈f·N⌉, at least 1 (f·N rounded to 9 places first, so 0.3 × 10 is 3, not 3.0000000000000004). */
export function topCount(fraction: number, n: number): number {
  return Math.min(n, Math.max(1, Math.ceil(Math.round(fraction * n * 1e9) / 1e9)));
}

/** The exact threshold: the k-th highest of the scores (null when there are none). */
export function exactTopThreshold(scores: ArrayLike<number>, fraction: number): number | null {
  if (scores.length === 0) return null;
  const sorted = Float64Array.from(scores).sort().reverse();
  return sorted[topCount(fraction, sorted.length) - 1];
}

/** A mergeable histogram of CLIP scores: count per bin. */
export class ScoreHistogram {
  readonly counts = new Map<number, number>();
  total = 0;

  static of(scores: Iterable<number>): ScoreHistogram {
    const h = new ScoreHistogram();
    for (const s of scores) h.addBin(binOf(s), 1);
    return h;
  }

  addBin(bin: number, count: number): void {
    if (count === 0) return;
    this.counts.set(bin, (this.counts.get(bin) ?? 0) + count);
    this.total += count;
  }

  merge(other: ScoreHistogram): this {
    for (const [bin, c] of other.counts) this.addBin(bin, c);
    return this;
  }

  /** The provisional threshold: the lower edge of the bin holding the k-th highest score. */
  topThreshold(fraction: number): number | null {
    if (this.total === 0) return null;
    const k = topCount(fraction, this.total);
    const bins = [...this.counts.keys()].sort((a, b) => b - a);
    let seen = 0;
    for (const bin of bins) {
      seen += this.counts.get(bin)!;
      if (seen >= k) return binLowerEdge(bin);
    }
    return binLowerEdge(bins[bins.length - 1]);
  }
}

/** The texts the rule ranks: the CLIP scores of every text of the rows that are neither failed nor trusted. */
export function rankedScores(records: readonly RowRecord[]): number[] {
  const out: number[] = [];
  for (const r of records) {
    if (r.status === 'failed' || r.trusted) continue;
    for (const s of r.scores) {
      const v = scoreOf(s, 'clip');
      if (v !== undefined) out.push(v);
    }
  }
  return out;
}

/** The run's shared histogram: every clip job adds its shard once and reads the merged counts back. */
export interface TopFractionSketch {
  /** Adds a shard's scores (once per shard id: a retried shard is not counted again) and returns the merged histogram. */
  add(shardId: string, scores: readonly number[]): Promise<ScoreHistogram>;
  read(): Promise<ScoreHistogram>;
  reset(): Promise<void>;
}

/** The Redis key of a run's histogram: one hash, so every command touches one key (cluster-safe). */
export function topFractionKey(prefix: string, runId: string): string {
  return `${prefix}:run:${hashTag(runId)}:clip-top`;
}

/**
 * KEYS: 1 the run's histogram hash. ARGV: 1 shard id, 2 ttl seconds, then bin, count pairs.
 * Fields: b<bin> → count, s:<shardId> → 1 (counted). Returns the hash (HGETALL), counted or not.
 */
const ADD_SHARD = `
if redis.call('HSETNX', KEYS[1], 's:' .. ARGV[1], 1) == 1 then
  for i = 3, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], 'b' .. ARGV[i], ARGV[i + 1]) end
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return redis.call('HGETALL', KEYS[1])
`;

function fromFields(flat: string[]): ScoreHistogram {
  const h = new ScoreHistogram();
  for (let i = 0; i < flat.length; i += 2) {
    if (flat[i].startsWith('b')) h.addBin(Number(flat[i].slice(1)), Number(flat[i + 1]));
  }
  return h;
}

export class RedisTopFractionSketch implements TopFractionSketch {
  constructor(
    private readonly redis: RedisClient,
    private readonly key: string,
    /** A finished run's histogram expires by itself (the final pass reads the parquet, not this). */
    private readonly ttlSeconds = 7 * 24 * 3600,
  ) {}

  async add(shardId: string, scores: readonly number[]): Promise<ScoreHistogram> {
    const args: (string | number)[] = [];
    for (const [bin, c] of ScoreHistogram.of(scores).counts) args.push(bin, c);
    return fromFields((await this.redis.eval(ADD_SHARD, 1, this.key, shardId, this.ttlSeconds, ...args)) as string[]);
  }

  async read(): Promise<ScoreHistogram> {
    const all = await this.redis.hgetall(this.key);
    return fromFields(Object.entries(all).flat());
  }

  async reset(): Promise<void> {
    await this.redis.del(this.key);
  }
}

/** One process's histogram (tests, runs without a shared Redis histogram): the same semantics in memory. */
export class MemoryTopFractionSketch implements TopFractionSketch {
  private readonly hist = new ScoreHistogram();
  private readonly counted = new Set<string>();

  async add(shardId: string, scores: readonly number[]): Promise<ScoreHistogram> {
    if (!this.counted.has(shardId)) {
      this.counted.add(shardId);
      this.hist.merge(ScoreHistogram.of(scores));
    }
    return new ScoreHistogram().merge(this.hist);
  }

  async read(): Promise<ScoreHistogram> {
    return new ScoreHistogram().merge(this.hist);
  }

  async reset(): Promise<void> {
    this.hist.counts.clear();
    this.hist.total = 0;
    this.counted.clear();
  }
}
