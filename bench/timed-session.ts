import type { DecoderSession } from '../src/models/runtime/generation/types.ts';

/** A DecoderSession that records each step's wall time in ms (step 0 is the prompt's prefix). */
export class TimedSession implements DecoderSession {
  readonly ms: number[] = [];
  /** Timed as a step, present where the inner session has it (beam search takes it then). */
  readonly stepWithLogSumExp?: DecoderSession['stepWithLogSumExp'];
  /** Not timed: sampling's softmax is search work around the step, present where the inner session has it. */
  readonly softmax?: DecoderSession['softmax'];
  constructor(private readonly inner: DecoderSession) {
    const scored = inner.stepWithLogSumExp?.bind(inner);
    if (scored) this.stepWithLogSumExp = (tokens) => this.timed(() => scored(tokens));
    this.softmax = inner.softmax?.bind(inner);
  }
  private async timed<T>(run: () => Promise<T>): Promise<T> {
    const t = performance.now();
    const out = await run();
    this.ms.push(performance.now() - t);
    return out;
  }
  get vocabSize(): number {
    return this.inner.vocabSize;
  }
  get rows(): number {
    return this.inner.rows;
  }
  step(tokens: number[][]): Promise<Float32Array> {
    return this.timed(() => this.inner.step(tokens));
  }
  reserve(length: number): void {
    this.inner.reserve?.(length);
  }
  select(indices: number[]): void {
    this.inner.select(indices);
  }
  close(): void {
    this.inner.close();
  }
}
