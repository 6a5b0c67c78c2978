/**
 * Small deterministic language models implementing DecoderSession, used as test input for
 * the decoding algorithms: their logits are a pure function of (image, tokens so far), so
 * every expected result can be worked out by hand or by brute force.
 */
import { logSumExp, softmax } from '../../src/models/runtime/generation/processors.ts';
import type { DecoderSession, RowProbabilities } from '../../src/models/runtime/generation/types.ts';

export type LogitsFn = (image: number, tokens: number[]) => number[];

export class TableLM implements DecoderSession {
  readonly vocabSize: number;
  /** Rows stepped at each call, to check that finished rows are dropped. */
  readonly stepRows: number[] = [];
  private state: { image: number; tokens: number[] }[];

  constructor(vocabSize: number, images: number, private readonly fn: LogitsFn) {
    this.vocabSize = vocabSize;
    this.state = Array.from({ length: images }, (_, image) => ({ image, tokens: [] }));
  }

  get rows(): number {
    return this.state.length;
  }

  async step(tokens: number[][]): Promise<Float32Array> {
    if (tokens.length !== this.state.length) throw new Error(`step with ${tokens.length} rows, session has ${this.state.length}`);
    const n = tokens[0].length;
    if (tokens.some((t) => t.length !== n)) throw new Error('rows must append the same number of tokens');
    this.stepRows.push(tokens.length);
    const out = new Float32Array(tokens.length * this.vocabSize);
    tokens.forEach((t, i) => {
      this.state[i].tokens.push(...t);
      const logits = this.fn(this.state[i].image, this.state[i].tokens);
      if (logits.length !== this.vocabSize) throw new Error('logits function returned the wrong size');
      out.set(logits, i * this.vocabSize);
    });
    return out;
  }

  select(indices: number[]): void {
    for (const i of indices) if (i < 0 || i >= this.state.length) throw new Error(`select index ${i} out of range`);
    this.state = indices.map((i) => ({ image: this.state[i].image, tokens: [...this.state[i].tokens] }));
  }

  close(): void {}
}

/** Logits from a table of log-probabilities keyed by the last token; unlisted tokens get `floor`. */
export function lastTokenTable(vocab: number, table: Record<number, Record<number, number>>, floor = -30): LogitsFn {
  return (_image, tokens) => {
    const row = table[tokens[tokens.length - 1]] ?? {};
    return Array.from({ length: vocab }, (_, t) => row[t] ?? floor);
  };
}

/** A pseudo-random but fixed LM: logits hashed from (image, last two tokens, position). */
export function hashedLM(vocab: number, eos: number, eosBias = 0): LogitsFn {
  return (image, tokens) => {
    const a = tokens[tokens.length - 1];
    const b = tokens.length > 1 ? tokens[tokens.length - 2] : -1;
    return Array.from({ length: vocab }, (_, t) => {
      let h = Math.imul(image + 1, 0x9e3779b1) ^ Math.imul(a + 7, 0x85ebca6b) ^ Math.imul(b + 13, 0xc2b2ae35) ^ Math.imul(t + 3, 0x27d4eb2f) ^ tokens.length * 0x165667b1;
      h = Math.imul(h ^ (h >>> 15), 0x2c1b3c6d);
      h ^= h >>> 13;
      return ((h >>> 0) / 2 ** 32) * 4 - 2 + (t === eos ? eosBias : 0);
    });
  };
}

/**
 * A TableLM that also gives each row's log Σ exp with its logits (`stepWithLogSumExp`), as the
 * BLIP decoder session does; counts the calls, so a test can tell which path a search took.
 */
export class LogSumExpLM extends TableLM {
  scoredSteps = 0;

  async stepWithLogSumExp(tokens: number[][]): Promise<{ logits: Float32Array; logSumExp: Float32Array }> {
    const logits = await this.step(tokens);
    this.scoredSteps++;
    const V = this.vocabSize;
    return { logits, logSumExp: Float32Array.from({ length: tokens.length }, (_, r) => logSumExp(logits.subarray(r * V, (r + 1) * V))) };
  }
}

/**
 * A TableLM that also gives each row's softmax (`softmax`), as the BLIP decoder session does
 * from ONNX Runtime; here from the JS softmax, with each row's `top` most likely tokens (by a
 * sort; 0 = none given). Counts the calls and the rows they held.
 */
export class SoftmaxLM extends TableLM {
  softmaxRows: number[] = [];

  constructor(vocabSize: number, images: number, fn: LogitsFn, private readonly top = 0) {
    super(vocabSize, images, fn);
  }

  async softmax(scores: Float32Array, rows: number): Promise<RowProbabilities> {
    this.softmaxRows.push(rows);
    const V = this.vocabSize;
    const probs = new Float32Array(rows * V);
    for (let r = 0; r < rows; r++) probs.set(softmax(scores.subarray(r * V, (r + 1) * V)), r * V);
    if (this.top === 0) return { probs };
    const k = Math.min(this.top, V);
    const ids = new Int32Array(rows * k);
    const topProbs = new Float32Array(rows * k);
    for (let r = 0; r < rows; r++) {
      const row = probs.subarray(r * V, (r + 1) * V);
      const order = Array.from({ length: V }, (_, i) => i).sort((a, b) => row[b] - row[a] || a - b).slice(0, k);
      order.forEach((id, i) => { ids[r * k + i] = id; topProbs[r * k + i] = row[id]; });
    }
    return { probs, top: { k, ids, probs: topProbs } };
  }
}
