import type * as ort from 'onnxruntime-node';
import { CapfiltError } from '../../core/errors.ts';
import type { BlipConfig } from './config.ts';
import { GraphSession, f32, i64, type Feeds } from '../runtime/sessions.ts';
import type { DecoderSession } from '../runtime/generation/types.ts';

/**
 * The captioner's DecoderSession over the `cross_kv` and `decoder` graphs (see graph/text.ts).
 *
 * Opening runs `cross_kv` once for the images. Rows start as one per image. Each `step` feeds
 * the self-attention cache of the previous step back in; `select` re-indexes that cache.
 * Cross-attention K/V stay per image: when rows come in equal contiguous runs per image (the
 * usual layout for greedy, beams and K samples) the decoder reads the image K/V as they are;
 * only an irregular layout makes a per-run copy, once per `select`, not per step.
 */
export class OrtDecoderSession implements DecoderSession {
  readonly vocabSize: number;
  private rowImage: number[];
  private past: ort.Tensor[];
  private pastLen = 0;
  private crossFeed: ort.Tensor[];
  private crossKey = '';
  private closed = false;

  private constructor(
    private readonly cfg: BlipConfig,
    private readonly decoder: GraphSession,
    /** cross_key_0, cross_value_0, cross_key_1, … for all images, [images, N, Tv, D]. */
    private readonly crossAll: ort.Tensor[],
    images: number,
  ) {
    this.vocabSize = cfg.text.vocabSize;
    this.rowImage = Array.from({ length: images }, (_, i) => i);
    this.past = this.emptyPast(images);
    this.crossFeed = crossAll;
    this.crossKey = this.rowImage.join(',');
  }

  /** `imageEmbeds` is the vision encoder output [images, Tv, Hv]. */
  static async open(cfg: BlipConfig, crossKv: GraphSession, decoder: GraphSession, imageEmbeds: ort.Tensor): Promise<OrtDecoderSession> {
    const out = await crossKv.run({ image_embeds: imageEmbeds });
    const cross: ort.Tensor[] = [];
    for (let l = 0; l < cfg.text.layers; l++) cross.push(out[`cross_key_${l}`], out[`cross_value_${l}`]);
    return new OrtDecoderSession(cfg, decoder, cross, imageEmbeds.dims[0]);
  }

  get rows(): number {
    return this.rowImage.length;
  }

  private headDims(): [number, number] {
    const N = this.cfg.text.heads;
    return [N, this.cfg.text.hiddenSize / N];
  }

  private emptyPast(rows: number): ort.Tensor[] {
    const [N, D] = this.headDims();
    return Array.from({ length: 2 * this.cfg.text.layers }, () => f32(new Float32Array(0), [rows, N, 0, D]));
  }

  async step(tokens: number[][]): Promise<Float32Array> {
    if (this.closed) throw new CapfiltError('SESSION_RUN_FAILED', 'decoder session used after close');
    const rows = this.rows;
    const seq = tokens[0]?.length ?? 0;
    if (tokens.length !== rows || seq === 0 || tokens.some((t) => t.length !== seq)) {
      throw new CapfiltError('SESSION_INPUT_MISMATCH', `decoder step: expected ${rows} rows of equal non-zero length, got ${tokens.length} rows of lengths ${[...new Set(tokens.map((t) => t.length))].join('/')}`, { rows });
    }
    const total = this.pastLen + seq;
    const feeds: Feeds = {
      input_ids: i64(tokens.flat(), [rows, seq]),
      // Generation attends to every position, as HF generate does (mask all ones).
      attention_mask: i64(new Array<number>(rows * total).fill(1), [rows, total]),
    };
    for (let l = 0; l < this.cfg.text.layers; l++) {
      feeds[`past_key_${l}`] = this.past[2 * l];
      feeds[`past_value_${l}`] = this.past[2 * l + 1];
      feeds[`cross_key_${l}`] = this.crossFeed[2 * l];
      feeds[`cross_value_${l}`] = this.crossFeed[2 * l + 1];
    }
    const out = await this.decoder.run(feeds);
    for (let l = 0; l < this.cfg.text.layers; l++) {
      this.past[2 * l] = out[`present_key_${l}`];
      this.past[2 * l + 1] = out[`present_value_${l}`];
    }
    this.pastLen = total;
    const logits = out.logits.data as Float32Array;
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
    this.past = this.past.map((t) => gatherRows(t, indices));
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
    this.closed = true;
    this.past = [];
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
