import type { Clock } from '../../src/core/clock.ts';

/**
 * A clock that moves only when the test moves it. Pass it where the code takes a `Clock`
 * (src/core/clock.ts); `now()` stays put and every `sleep()` waits until `advance()` (or `next()`,
 * or `drive()`) carries the time past its deadline. Sleepers wake in deadline order (ties in call
 * order), and each one's continuation runs before the next wakes, so code that sleeps again
 * after waking sees the time it would have seen on the real clock.
 *
 * No wall-clock time passes: between wake-ups the helper only yields one event-loop turn
 * (setImmediate) so that promise chains settle.
 */
interface Sleeper {
  at: number;
  seq: number;
  wake(): void;
}

const turn = () => new Promise<void>((r) => setImmediate(r));

export class ManualClock implements Clock {
  private t: number;
  private seq = 0;
  private sleepers: Sleeper[] = [];
  private watchers: Array<{ n: number; resolve(): void }> = [];
  /** Every duration passed to `sleep()`, in call order. */
  readonly sleeps: number[] = [];

  constructor(start = 0) {
    this.t = start;
  }

  now(): number {
    return this.t;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    this.sleeps.push(ms);
    if (signal?.aborted) return Promise.reject(signal.reason);
    // Like setTimeout(0) on the real clock, a wait of ≤ 0 ms does not wait for time to pass.
    if (!(ms > 0)) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        this.sleepers = this.sleepers.filter((s) => s !== sleeper);
        reject(signal!.reason);
      };
      const sleeper: Sleeper = {
        at: this.t + ms,
        seq: this.seq++,
        wake: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.sleepers.push(sleeper);
      this.watchers = this.watchers.filter((w) => (this.sleepers.length >= w.n ? (w.resolve(), false) : true));
    });
  }

  /** Sleeps not yet woken. */
  get pending(): number {
    return this.sleepers.length;
  }

  /** Deadlines (clock times) of the sleeps not yet woken, earliest first. */
  get deadlines(): number[] {
    return this.sleepers.map((s) => s.at).sort((a, b) => a - b);
  }

  /** Resolves once at least `n` sleeps are pending (woken by `sleep()` itself, no polling). */
  whenSleeping(n = 1): Promise<void> {
    if (this.sleepers.length >= n) return Promise.resolve();
    return new Promise((resolve) => this.watchers.push({ n, resolve }));
  }

  /** Moves the time forward by `ms`, waking every sleeper whose deadline it passes. */
  async advance(ms: number): Promise<void> {
    if (!(ms >= 0)) throw new RangeError(`advance(${ms}): time only moves forward`);
    const target = this.t + ms;
    for (;;) {
      await turn();
      const due = this.earliest();
      if (!due || due.at > target) break;
      this.wake(due);
    }
    this.t = target;
    await turn();
  }

  /** Jumps to the earliest pending deadline and wakes that sleeper; false when none is pending. */
  async next(): Promise<boolean> {
    await turn();
    const due = this.earliest();
    if (!due) return false;
    this.wake(due);
    await turn();
    return true;
  }

  /**
   * Settles `work`, jumping to the next deadline whenever a sleep is pending — as if every wait
   * took its full time, without any time passing. For code that waits on the clock and on real
   * I/O in turn (a fetch that backs off between attempts, requests spaced per host).
   */
  async drive<T>(work: Promise<T>): Promise<T> {
    let settled = false;
    const done = work.then(() => { settled = true; }, () => { settled = true; });
    while (!settled) {
      await Promise.race([done, this.whenSleeping()]);
      if (!settled) await this.next();
    }
    return work;
  }

  private earliest(): Sleeper | undefined {
    let best: Sleeper | undefined;
    for (const s of this.sleepers) if (!best || s.at < best.at || (s.at === best.at && s.seq < best.seq)) best = s;
    return best;
  }

  private wake(s: Sleeper): void {
    this.sleepers = this.sleepers.filter((x) => x !== s);
    this.t = Math.max(this.t, s.at);
    s.wake();
  }
}
