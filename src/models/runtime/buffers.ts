import { CapfiltError } from '../../core/errors.ts';

/**
 * Float32 buffers handed out and taken back, so that the arrays a model fills per batch on the
 * JS side (pixel batches, image embeddings gathered for a run, decoder caches) reuse memory
 * instead of asking the OS for fresh pages every batch.
 *
 * Why: a fresh page costs a page fault on first touch. On the shared VMs this project measures on
 * a fault cost ~14 µs (a fresh 340 MB Float32Array took 1.2 s to fill, the same array refilled
 * 14 ms). Graph outputs are out of reach: onnxruntime-node copies each into a fresh ArrayBuffer,
 * whatever the caller passes.
 *
 * `take(length)` returns a Float32Array of exactly `length` elements over a free buffer of at
 * least that capacity and at most twice it (so a batch short of full reuses the full batch's
 * buffers, while a small request never pins a large buffer), or over a new one. Contents are
 * whatever the last user left: callers that need zeros fill them. `give` takes arrays back.
 *
 * A free buffer that is not taken again within `idleMs` (30 s by default) is dropped, so the
 * pool holds what the recent batches used (with concurrent batches, each one's set) and lets go
 * of it when the work stops or changes shape. (Bounding free memory by the most that was out at
 * once does not work: concurrent calls that overlap only partly need more distinct buffers
 * than they ever hold at the same moment, and the evicted ones were asked for again at once.)
 */
export class Float32Pool {
  private free: { buf: ArrayBuffer; at: number }[] = [];
  private readonly out = new Set<ArrayBuffer>();
  private outBytes = 0;
  private freeTotal = 0;
  private readonly idleMs: number;
  private readonly now: () => number;

  constructor(options: { idleMs?: number; now?: () => number } = {}) {
    this.idleMs = options.idleMs ?? 30_000;
    this.now = options.now ?? (() => performance.now());
  }

  take(length: number): Float32Array {
    if (!Number.isInteger(length) || length < 0) throw new CapfiltError('INTERNAL', `buffer pool: length must be a non-negative integer, got ${length}`);
    this.dropIdle();
    const bytes = length * 4;
    let best = -1;
    for (let i = 0; i < this.free.length; i++) {
      const b = this.free[i].buf.byteLength;
      if (b >= bytes && b <= 2 * bytes && (best < 0 || b < this.free[best].buf.byteLength)) best = i;
    }
    let buf: ArrayBuffer;
    if (best >= 0) {
      buf = this.free[best].buf;
      this.free.splice(best, 1);
      this.freeTotal -= buf.byteLength;
    } else {
      buf = new ArrayBuffer(bytes);
    }
    this.out.add(buf);
    this.outBytes += buf.byteLength;
    return new Float32Array(buf, 0, length);
  }

  /** Takes arrays back; each must come from `take` on this pool and not have been given back. */
  give(...arrays: Float32Array[]): void {
    for (const a of arrays) {
      const buf = a.buffer as ArrayBuffer;
      if (!this.out.delete(buf)) throw new CapfiltError('INTERNAL', 'buffer pool: an array given back that this pool did not hand out, or gave back twice');
      this.outBytes -= buf.byteLength;
      this.free.push({ buf, at: this.now() });
      this.freeTotal += buf.byteLength;
    }
    this.dropIdle();
  }

  private dropIdle(): void {
    const cutoff = this.now() - this.idleMs;
    if (!this.free.some((f) => f.at < cutoff)) return;
    this.free = this.free.filter((f) => f.at >= cutoff);
    this.freeTotal = this.free.reduce((a, f) => a + f.buf.byteLength, 0);
  }

  /** Bytes held in free buffers. */
  get freeBytes(): number {
    return this.freeTotal;
  }

  /** Bytes in arrays handed out and not yet given back. */
  get outstandingBytes(): number {
    return this.outBytes;
  }

  /** Drops every free buffer (arrays still out stay valid and may still be given back). */
  clear(): void {
    this.free = [];
    this.freeTotal = 0;
  }
}
