import * as ort from 'onnxruntime-node';
import { CapfiltError } from '../../core/errors.ts';
import type { BlipConfig } from './config.ts';
import { Float32Pool } from '../runtime/buffers.ts';
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
 * `select` gathers rows into a second set of buffers (only the filled slots) and swaps.
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
  private rowImage: number[];
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
  ) {
    this.vocabSize = cfg.text.vocabSize;
    this.N = cfg.text.heads;
    this.D = cfg.text.hiddenSize / this.N;
    this.rowImage = Array.from({ length: images }, (_, i) => i);
    this.cache = Array.from({ length: 2 * cfg.text.layers }, () => new Float32Array(0));
    this.crossFeed = crossAll;
    this.crossKey = this.rowImage.join(',');
  }

  /**
   * `imageEmbeds` is the vision encoder output [images, Tv, Hv]; it is read here only, so the
   * caller may reuse it once `open` resolves. `pool`: where the caches come from and return to
   * (a fresh pool by default, which frees them with the session).
   */
  static async open(cfg: BlipConfig, crossKv: GraphSession, decoder: GraphSession, imageEmbeds: ort.Tensor, pool = new Float32Pool()): Promise<OrtDecoderSession> {
    const out = await crossKv.run({ image_embeds: imageEmbeds });
    const cross: ort.Tensor[] = [];
    for (let l = 0; l < cfg.text.layers; l++) cross.push(out[`cross_key_${l}`], out[`cross_value_${l}`]);
    return new OrtDecoderSession(cfg, decoder, pool, cross, imageEmbeds.dims[0]);
  }

  get rows(): number {
    return this.rowImage.length;
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
    const { cap, N, D } = this;
    const ids = new BigInt64Array(rows * seq);
    const positions = new BigInt64Array(rows * seq);
    const mask = new BigInt64Array(rows * (cap + seq));
    for (let r = 0; r < rows; r++) {
      for (let s = 0; s < seq; s++) {
        ids[r * seq + s] = BigInt(tokens[r][s]);
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
    if (seq === 1) return logits;
    const V = this.vocabSize;
    const last = new Float32Array(rows * V);
    for (let r = 0; r < rows; r++) last.set(logits.subarray((r * seq + seq - 1) * V, (r * seq + seq) * V), r * V);
    return last;
  }

  select(indices: number[]): void {
    const old = this.rows;
    if (indices.some((i) => !Number.isInteger(i) || i < 0 || i >= old)) {
      throw new CapfiltError('SESSION_INPUT_MISMATCH', `decoder select: indices must lie in [0, ${old}), got ${JSON.stringify(indices)}`);
    }
    if (indices.length === old && indices.every((i, k) => i === k)) return;
    this.rowImage = indices.map((i) => this.rowImage[i]);
    const { N, D, cap } = this;
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
      indices.forEach((from, to) => {
        for (let n = 0; n < N; n++) dst.set(src.subarray((from * N + n) * cap * D, (from * N + n) * cap * D + filled), (to * N + n) * cap * D);
      });
      this.spare[c] = src;
      return dst;
    });
    this.updateCross();
  }

  /** Picks the cross K/V layout for the current rows (see the class comment). */
  private updateCross(): void {
    const runs: { image: number; length: number }[] = [];
    for (const img of this.rowImage) {
      const lastRun = runs[runs.length - 1];
      if (lastRun && lastRun.image === img) lastRun.length++;
      else runs.push({ image: img, length: 1 });
    }
    const equal = runs.every((r) => r.length === runs[0].length);
    const images = equal ? runs.map((r) => r.image) : this.rowImage;
    const key = images.join(',');
    if (key === this.crossKey) return;
    this.crossKey = key;
    const all = this.crossAll[0].dims[0];
    this.crossFeed = images.length === all && images.every((im, i) => im === i) ? this.crossAll : this.crossAll.map((t) => gatherRows(t, images));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.pool.give(...this.cache.filter((c) => c.length > 0), ...this.spare);
    this.cache = [];
    this.spare = [];
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
