import * as ort from 'onnxruntime-node';
import { CapfiltError } from '../../core/errors.ts';
import type { BlipConfig } from './config.ts';
import { Float32Pool } from '../runtime/buffers.ts';
import type { RowGraphs } from '../runtime/row-graphs.ts';
import { GraphSession, f32, type Feeds } from '../runtime/sessions.ts';
import type { DecoderSession } from '../runtime/generation/types.ts';

/**
 * The captioner's DecoderSession over the `cross_kv` and `decoder` graphs (see graph/text.ts).
 *
 * Opening runs `cross_kv` once for the images. Rows start as one per image.
 *
 * Self-attention cache: per layer one K and one V buffer [rows, N, cap, D] owned here. The
 * decoder reads it as it is (empty slots masked) and returns only the step's new K/V, which
 * are written into their slots; so a step copies nothing that grows with the length, and
 * `cap` is reserved once (`reserve`, from generate's max length) instead of growing per step.
 *
 * Rows and places: the caches hold one place (a [N, cap, D] block per layer) per row, and
 * `place[r]` says which place holds row r. A `select` that keeps the row count (beam search's
 * re-ordering, every step) moves no cache: a row continuing a parent nobody else continues takes
 * over the parent's place, and only a parent's second and later children are copied, into the
 * places of parents nobody continues, of the same image (so the cross K/V layout holds). The
 * decoder runs over places, so a step feeds tokens and returns logits through `place`. A
 * `select` that changes the row count, or finds no free place of the right image, gathers the
 * rows in order into a second set of buffers (only the filled slots) and swaps.
 *
 * Outputs are not preallocated: onnxruntime-node copies every output into a new ArrayBuffer
 * after the run, into a preallocated tensor too (which ORT has then written as well), so
 * handing ORT buffers saves nothing and costs a second write.
 *
 * Cross-attention K/V stay per image: when rows come in equal contiguous runs per image (the
 * usual layout for greedy, beams and K samples) the decoder reads the image K/V as they are;
 * only an irregular layout makes a per-run copy, once per `select`, not per step.
 *
 * The caches come from the `Float32Pool` passed to `open` and go back to it on `close`, so a
 * captioner's next batch reuses this one's memory instead of faulting in fresh pages.
 */
export class OrtDecoderSession implements DecoderSession {
  readonly vocabSize: number;
  /** The image of the row each place holds, in place order (what the decoder's rows see). */
  private placeImage: number[];
  /** place[r]: the cache place holding row r (see the class comment). */
  private place: number[];
  /** Logits in row order when places are not in row order, reused across steps. */
  private ordered: Float32Array = new Float32Array(0);
  private cache: Float32Array[];
  private spare: Float32Array[] = [];
  private cap = 0;
  private pastLen = 0;
  private reserved = 0;
  private crossFeed: ort.Tensor[];
  private crossKey = '';
  private closed = false;
  private readonly N: number;
  private readonly D: number;

  private constructor(
    private readonly cfg: BlipConfig,
    private readonly decoder: GraphSession,
    private readonly pool: Float32Pool,
    /** cross_key_0, cross_value_0, cross_key_1, … for all images, [images, N, Tv, D]. */
    private readonly crossAll: ort.Tensor[],
    images: number,
    rowGraphs: Partial<RowGraphs>,
  ) {
    this.vocabSize = cfg.text.vocabSize;
    this.N = cfg.text.heads;
    this.D = cfg.text.hiddenSize / this.N;
    this.placeImage = Array.from({ length: images }, (_, i) => i);
    this.place = Array.from({ length: images }, (_, i) => i);
    this.cache = Array.from({ length: 2 * cfg.text.layers }, () => new Float32Array(0));
    this.crossFeed = crossAll;
    this.crossKey = this.placeImage.join(',');
    const { logSumExp, softmax } = rowGraphs;
    if (logSumExp) {
      this.stepWithLogSumExp = async (tokens) => {
        const logits = await this.step(tokens);
        return { logits, logSumExp: await logSumExp.run(logits, this.rows, this.vocabSize) };
      };
    }
    if (softmax) this.softmax = (scores, rows) => softmax.run(scores, rows, this.vocabSize);
  }

  /**
   * `imageEmbeds` is the vision encoder output [images, Tv, Hv]; it is read here only, so the
   * caller may reuse it once `open` resolves. `pool`: where the caches come from and return to
   * (a fresh pool by default, which frees them with the session). `rowGraphs`: where
   * `stepWithLogSumExp` computes each row's log-sum-exp and `softmax` its probabilities (each
   * absent without its graph, and the search computes the same in JS).
   */
  static async open(cfg: BlipConfig, crossKv: GraphSession, decoder: GraphSession, imageEmbeds: ort.Tensor, pool = new Float32Pool(), rowGraphs: Partial<RowGraphs> = {}): Promise<OrtDecoderSession> {
    const out = await crossKv.run({ image_embeds: imageEmbeds });
    const cross: ort.Tensor[] = [];
    for (let l = 0; l < cfg.text.layers; l++) cross.push(out[`cross_key_${l}`], out[`cross_value_${l}`]);
    return new OrtDecoderSession(cfg, decoder, pool, cross, imageEmbeds.dims[0], rowGraphs);
  }

  get rows(): number {
    return this.placeImage.length;
  }

  reserve(length: number): void {
    this.reserved = Math.max(this.reserved, length);
  }

  /** Makes room for `needed` positions: at least the reserved length, doubling past it. */
  private ensureCapacity(needed: number): void {
    if (needed <= this.cap) return;
    const cap = Math.max(needed, this.reserved, 2 * this.cap);
    const rows = this.rows;
    const per = this.pastLen * this.D;
    this.cache = this.cache.map((old) => {
      // Zeros, as a fresh array would hold: empty slots are masked, and stale values from a pooled
      // buffer must not be able to reach the products (a NaN times a zero weight is still NaN).
      const fresh = this.pool.take(rows * this.N * cap * this.D).fill(0);
      for (let rh = 0; rh < rows * this.N && per > 0; rh++) fresh.set(old.subarray(rh * this.cap * this.D, rh * this.cap * this.D + per), rh * cap * this.D);
      if (old.length > 0) this.pool.give(old);
      return fresh;
    });
    this.pool.give(...this.spare);
    this.spare = [];
    this.cap = cap;
  }

  /** Present where `open` was given the log-sum-exp graph: the step's logits and each row's log-sum-exp. */
  readonly stepWithLogSumExp?: (tokens: number[][]) => Promise<{ logits: Float32Array; logSumExp: Float32Array }>;

  /** Present where `open` was given the softmax graph: each row's softmax of `scores` [rows, V], and its most likely tokens. */
  readonly softmax?: DecoderSession['softmax'];

  /** Returns each row's last-position logits [rows, V]. */
  async step(tokens: number[][]): Promise<Float32Array> {
    if (this.closed) throw new CapfiltError('SESSION_RUN_FAILED', 'decoder session used after close');
    const rows = this.rows;
    const seq = tokens[0]?.length ?? 0;
    if (tokens.length !== rows || seq === 0 || tokens.some((t) => t.length !== seq)) {
      throw new CapfiltError('SESSION_INPUT_MISMATCH', `decoder step: expected ${rows} rows of equal non-zero length, got ${tokens.length} rows of lengths ${[...new Set(tokens.map((t) => t.length))].join('/')}`, { rows });
    }
    const past = this.pastLen;
    this.ensureCapacity(past + seq);
    const { cap, N, D, place } = this;
    const ids = new BigInt64Array(rows * seq);
    const positions = new BigInt64Array(rows * seq);
    const mask = new BigInt64Array(rows * (cap + seq));
    for (let r = 0; r < rows; r++) {
      for (let s = 0; s < seq; s++) {
        ids[place[r] * seq + s] = BigInt(tokens[r][s]);
        positions[r * seq + s] = BigInt(past + s);
      }
      // Generation attends to every filled position, as HF generate does (mask all ones).
      mask.fill(1n, r * (cap + seq), r * (cap + seq) + past);
      mask.fill(1n, r * (cap + seq) + cap, (r + 1) * (cap + seq));
    }
    const feeds: Feeds = {
      input_ids: new ort.Tensor('int64', ids, [rows, seq]),
      position_ids: new ort.Tensor('int64', positions, [rows, seq]),
      attention_mask: new ort.Tensor('int64', mask, [rows, cap + seq]),
    };
    const layers = this.cfg.text.layers;
    for (let l = 0; l < layers; l++) {
      feeds[`past_key_${l}`] = f32(this.cache[2 * l], [rows, N, cap, D]);
      feeds[`past_value_${l}`] = f32(this.cache[2 * l + 1], [rows, N, cap, D]);
      feeds[`cross_key_${l}`] = this.crossFeed[2 * l];
      feeds[`cross_value_${l}`] = this.crossFeed[2 * l + 1];
    }
    const fetches = await this.decoder.run(feeds);
    const logits = fetches.logits.data as Float32Array;
    // New K/V [rows, seq, N·D] into slots past..past+seq-1 of [rows, N, cap, D].
    for (let c = 0; c < 2 * layers; c++) {
      const fresh = fetches[`${c % 2 ? 'new_value' : 'new_key'}_${c >> 1}`].data as Float32Array;
      const dst = this.cache[c];
      for (let r = 0; r < rows; r++) {
        for (let s = 0; s < seq; s++) {
          const src = (r * seq + s) * N * D;
          for (let n = 0; n < N; n++) dst.set(fresh.subarray(src + n * D, src + (n + 1) * D), ((r * N + n) * cap + past + s) * D);
        }
      }
    }
    this.pastLen = past + seq;
    const inOrder = place.every((p, r) => p === r);
    if (seq === 1 && inOrder) return logits;
    const V = this.vocabSize;
    // Each row's last position, in row order.
    const last = inOrder ? new Float32Array(rows * V) : this.orderedLogits(rows * V);
    for (let r = 0; r < rows; r++) last.set(logits.subarray((place[r] * seq + seq - 1) * V, (place[r] * seq + seq) * V), r * V);
    return last;
  }

  /** The reused buffer for logits put back in row order (from the pool, returned on close). */
  private orderedLogits(size: number): Float32Array {
    if (this.ordered.length !== size) {
      if (this.ordered.length > 0) this.pool.give(this.ordered);
      this.ordered = this.pool.take(size);
    }
    return this.ordered;
  }

  select(indices: number[]): void {
    const old = this.rows;
    if (indices.some((i) => !Number.isInteger(i) || i < 0 || i >= old)) {
      throw new CapfiltError('SESSION_INPUT_MISMATCH', `decoder select: indices must lie in [0, ${old}), got ${JSON.stringify(indices)}`);
    }
    if (indices.length === old && indices.every((i, k) => i === k)) return;
    const { N, D, cap } = this;
    if (cap > 0 && indices.length === old && this.reassign(indices)) return;
    const from = indices.map((i) => this.place[i]);
    this.placeImage = from.map((p) => this.placeImage[p]);
    this.place = indices.map((_, r) => r);
    const size = indices.length * N * cap * D;
    const filled = this.pastLen * D;
    // Before the first step there is no cache yet: the first step sizes it for the rows chosen here.
    if (cap > 0) this.cache = this.cache.map((src, c) => {
      let dst = this.spare[c];
      if (dst?.length !== size) {
        if (dst) this.pool.give(dst);
        // Zeros beyond the filled slots, as in ensureCapacity.
        dst = this.pool.take(size).fill(0);
      }
      from.forEach((p, to) => copyPlace(src, p, dst, to, N, cap * D, filled));
      this.spare[c] = src;
      return dst;
    });
    this.updateCross();
  }

  /**
   * The same row count re-indexed without moving caches where it can (see the class comment):
   * false, with nothing changed, when a copied row finds no free place of its image.
   */
  private reassign(indices: number[]): boolean {
    const next = new Array<number>(indices.length).fill(-1);
    const taken = new Array<boolean>(indices.length).fill(false);
    indices.forEach((parent, r) => {
      const p = this.place[parent];
      if (!taken[p]) { taken[p] = true; next[r] = p; }
    });
    const copies: [number, number][] = [];
    for (let r = 0; r < indices.length; r++) {
      if (next[r] >= 0) continue;
      const src = this.place[indices[r]];
      const free = taken.findIndex((t, q) => !t && this.placeImage[q] === this.placeImage[src]);
      if (free < 0) return false;
      taken[free] = true;
      next[r] = free;
      copies.push([src, free]);
    }
    // Sources are places some row keeps, destinations places no row keeps: no copy reads a
    // place another has written.
    const filled = this.pastLen * this.D;
    for (const cache of this.cache) for (const [src, dst] of copies) copyPlace(cache, src, cache, dst, this.N, this.cap * this.D, filled);
    this.place = next;
    return true;
  }

  /** Picks the cross K/V layout for the places' images (see the class comment). */
  private updateCross(): void {
    const runs: { image: number; length: number }[] = [];
    for (const img of this.placeImage) {
      const lastRun = runs[runs.length - 1];
      if (lastRun && lastRun.image === img) lastRun.length++;
      else runs.push({ image: img, length: 1 });
    }
    const equal = runs.every((r) => r.length === runs[0].length);
    const images = equal ? runs.map((r) => r.image) : this.placeImage;
    const key = images.join(',');
    if (key === this.crossKey) return;
    this.crossKey = key;
    const all = this.crossAll[0].dims[0];
    this.crossFeed = images.length === all && images.every((im, i) => im === i) ? this.crossAll : this.crossAll.map((t) => gatherRows(t, images));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.pool.give(...this.cache.filter((c) => c.length > 0), ...this.spare, ...(this.ordered.length > 0 ? [this.ordered] : []));
    this.cache = [];
    this.spare = [];
    this.ordered = new Float32Array(0);
  }
}

/** The filled part of place `from` of `src` into place `to` of `dst`: per head, `filled` of a head's `perHead` floats. */
function copyPlace(src: Float32Array, from: number, dst: Float32Array, to: number, heads: number, perHead: number, filled: number): void {
  for (let n = 0; n < heads; n++) {
    const at = (from * heads + n) * perHead;
    dst.set(src.subarray(at, at + filled), (to * heads + n) * perHead);
  }
}

/** New tensor whose row i (first axis) is row `indices[i]` of `t`. */
function gatherRows(t: ort.Tensor, indices: number[]): ort.Tensor {
  const src = t.data as Float32Array;
  const per = t.dims.slice(1).reduce((a, b) => a * b, 1);
  const out = new Float32Array(indices.length * per);
  indices.forEach((from, to) => out.set(src.subarray(from * per, (from + 1) * per), to * per));
  return f32(out, [indices.length, ...t.dims.slice(1)]);
}
