/**
 * Logits processors as Hugging Face `generate` applies them, each a small function that edits
 * one row's scores in place (float32, like the reference). Order matters and follows HF:
 * processors (repetition penalty, min length) for every method, then warpers (temperature,
 * top-k, top-p) for sampling only.
 */

export interface RowState {
  /** The row's tokens so far: bos, prompt and everything generated. */
  tokens: number[];
}

export type LogitsProcessor = (scores: Float32Array, row: RowState) => void;

/** HF RepetitionPenaltyLogitsProcessor: every token already present is made less likely once. */
export function repetitionPenalty(penalty: number): LogitsProcessor | null {
  if (penalty === 1) return null;
  return (scores, row) => {
    for (const t of new Set(row.tokens)) {
      if (t < 0 || t >= scores.length) continue;
      const s = scores[t];
      scores[t] = s < 0 ? s * penalty : s / penalty;
    }
  };
}

/** HF MinLengthLogitsProcessor: eos is forbidden while the whole sequence is shorter than minLength. */
export function minLength(min: number, eos: number): LogitsProcessor | null {
  if (min <= 0) return null;
  return (scores, row) => {
    if (row.tokens.length < min) scores[eos] = -Infinity;
  };
}

export function temperature(t: number): LogitsProcessor | null {
  if (t === 1) return null;
  return (scores) => {
    for (let i = 0; i < scores.length; i++) scores[i] = scores[i] / t;
  };
}

/** HF TopKLogitsWarper: scores below the k-th largest become -inf (ties with it survive). */
export function topK(k: number): LogitsProcessor | null {
  if (k <= 0) return null;
  return (scores) => {
    if (k >= scores.length) return;
    const kth = kthLargest(scores, k);
    for (let i = 0; i < scores.length; i++) if (scores[i] < kth) scores[i] = -Infinity;
  };
}

/**
 * HF TopPLogitsWarper: sort ascending, drop tokens while the cumulative probability stays
 * ≤ 1 − p, always keep the most likely token. Equivalently, going down from the most likely
 * token, keep each token while the probability kept before it is still below p.
 */
export function topP(p: number): LogitsProcessor | null {
  if (p >= 1) return null;
  return (scores) => {
    const kept = topPKept(softmax(scores), p);
    const keep = new Uint8Array(scores.length);
    for (const i of kept) keep[i] = 1;
    for (let i = 0; i < scores.length; i++) if (!keep[i]) scores[i] = -Infinity;
  };
}

let keptScratch = new Int32Array(0);

/** Probability buckets by the float32's top 16 bits (sign, exponent, 7 mantissa bits): ordered as the values. */
const BUCKET_SHIFT = 16;
const bucketSum = new Float64Array(1 << (32 - BUCKET_SHIFT));
const bucketCount = new Uint32Array(1 << (32 - BUCKET_SHIFT));

/**
 * The tokens topP keeps, in no particular order, from a row's softmax `probs` (float32, 0 for a
 * forbidden token); a view of a scratch array that the next call overwrites.
 *
 * No sort of the vocabulary: an uncertain step (a flat distribution) puts most of it in the
 * nucleus, and sorting 30k ids per row per step cost more than the decoder step. Tokens are
 * bucketed by their probability's top bits instead; going down from the highest bucket, a bucket
 * whose whole mass still leaves the total below p is kept whole (every token in it has less than
 * p kept before it), and only the bucket where the total reaches p is sorted and walked token by
 * token.
 */
export function topPKept(probs: Float32Array, p: number): Int32Array {
  const bits = new Uint32Array(probs.buffer, probs.byteOffset, probs.length);
  let top = 0;
  for (let i = 0; i < probs.length; i++) {
    if (!(probs[i] > 0)) continue;
    const b = bits[i] >>> BUCKET_SHIFT;
    bucketSum[b] += probs[i];
    bucketCount[b]++;
    if (b > top) top = b;
  }
  let cum = 0;
  let boundary = -1;
  for (let b = top; b >= 0; b--) {
    if (bucketCount[b] === 0) continue;
    if (cum + bucketSum[b] >= p) {
      boundary = b;
      break;
    }
    cum += bucketSum[b];
  }
  // Typed scratch, not JS arrays: a nucleus of most of the vocabulary is a large object per
  // row and step (a fresh mapping, page faults, a collection).
  if (keptScratch.length < probs.length) keptScratch = new Int32Array(probs.length);
  const kept = keptScratch;
  let n = 0;
  const edge: number[] = [];
  for (let i = 0; i < probs.length; i++) {
    if (!(probs[i] > 0)) continue;
    const b = bits[i] >>> BUCKET_SHIFT;
    if (b > boundary) kept[n++] = i;
    else if (b === boundary) edge.push(i);
    bucketSum[b] = 0;
    bucketCount[b] = 0;
  }
  sortByProbability(edge, probs);
  for (const i of edge) {
    if (n > 0 && cum >= p) break;
    cum += probs[i];
    kept[n++] = i;
  }
  return kept.subarray(0, n);
}

/**
 * Sorts token ids by probability, largest first, ties by id — the order of
 * `(a, b) => probs[b] - probs[a] || a - b`. A flat distribution (an uncertain step) puts most of
 * the vocabulary above any threshold, and a comparator sort of 30k ids cost 10–15 ms per row.
 * Here each id becomes one float64 key, (2³² − 1 − the probability's float32 bits) · 2^b + id
 * (positive floats order as their bits; under 2⁵³, so exact), sorted by the typed array's
 * native numeric sort.
 */
export function sortByProbability(ids: number[], probs: Float32Array): void {
  const shift = Math.max(1, Math.ceil(Math.log2(probs.length)));
  if (shift > 21) {
    ids.sort((a, b) => probs[b] - probs[a] || a - b);
    return;
  }
  const bits = new Uint32Array(probs.buffer, probs.byteOffset, probs.length);
  const scale = 2 ** shift;
  const keys = new Float64Array(ids.length);
  for (let j = 0; j < ids.length; j++) keys[j] = (0xffffffff - bits[ids[j]]) * scale + ids[j];
  keys.sort();
  for (let j = 0; j < ids.length; j++) ids[j] = keys[j] % scale;
}

export function applyAll(processors: (LogitsProcessor | null)[], scores: Float32Array, row: RowState): void {
  for (const p of processors) if (p) p(scores, row);
}

export function softmax(scores: Float32Array): Float32Array {
  return softmaxInto(scores, new Float32Array(scores.length));
}

/** softmax written into `out` (as long as `scores`), which it returns. */
export function softmaxInto(scores: Float32Array, out: Float32Array): Float32Array {
  softmaxFill(scores, out, null);
  return out;
}

/**
 * softmax into `out` (float32: each exp rounded, then divided by the float64 sum), keeping each
 * exp(score − max) in `exps` when given (float64; 0 for −∞), so that a sampler can renormalise
 * over the nucleus without a second pass of exp over it; returns the max.
 */
export function softmaxFill(scores: Float32Array, out: Float32Array, exps: Float64Array | null): number {
  let max = -Infinity;
  for (let i = 0; i < scores.length; i++) if (scores[i] > max) max = scores[i];
  let sum = 0;
  for (let i = 0; i < scores.length; i++) {
    const e = scores[i] === -Infinity ? 0 : Math.exp(scores[i] - max);
    out[i] = e;
    if (exps) exps[i] = e;
    sum += e;
  }
  for (let i = 0; i < scores.length; i++) out[i] = out[i] / sum;
  return max;
}

export function logSoftmax(scores: Float32Array): Float32Array {
  return logSoftmaxInto(scores, new Float32Array(scores.length));
}

/** log Σ exp(scores) in float64, shifted by the row's max so no exp overflows. */
export function logSumExp(scores: ArrayLike<number>): number {
  let max = -Infinity;
  for (let i = 0; i < scores.length; i++) if (scores[i] > max) max = scores[i];
  let sum = 0;
  for (let i = 0; i < scores.length; i++) sum += Math.exp(scores[i] - max);
  return max + Math.log(sum);
}

/** logSoftmax written into `out` (as long as `scores`), which it returns. */
export function logSoftmaxInto(scores: Float32Array, out: Float32Array): Float32Array {
  return logProbsInto(scores, logSumExp(scores), out);
}

/** log_softmax from a row's log Σ exp (`logSumExp`, or `RowLogSumExp` in ORT): scores − lse into `out`. */
export function logProbsInto(scores: Float32Array, logSumExp: number, out: Float32Array): Float32Array {
  for (let i = 0; i < scores.length; i++) out[i] = scores[i] - logSumExp;
  return out;
}

/** First index of the largest score (torch.argmax on CPU picks the first). */
export function argmax(scores: Float32Array): number {
  let best = 0;
  for (let i = 1; i < scores.length; i++) if (scores[i] > scores[best]) best = i;
  return best;
}

function kthLargest(scores: Float32Array, k: number): number {
  // A bounded min-heap would be O(n log k); k is small (≤ 50) and n ≈ 30k, so a sorted copy of
  // the candidates above a running threshold is simpler and fast enough.
  const top: number[] = [];
  for (let i = 0; i < scores.length; i++) {
    const s = scores[i];
    if (top.length < k) {
      top.push(s);
      if (top.length === k) top.sort((a, b) => b - a);
    } else if (s > top[k - 1]) {
      let j = k - 1;
      while (j > 0 && top[j - 1] < s) { top[j] = top[j - 1]; j--; }
      top[j] = s;
    }
  }
  if (top.length < k) top.sort((a, b) => b - a);
  return top[k - 1];
}
