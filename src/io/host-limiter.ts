import { realClock, type Clock } from '../core/clock.ts';

/**
 * Politeness per host: at most `concurrency` requests in flight to one host, and request starts
 * to one host at least `minDelayMs` apart. A start time is reserved when a slot is taken, so two
 * requests released at the same moment still start `minDelayMs` apart. Time comes from `clock`
 * (the real clock unless a test passes a manual one).
 */
interface HostState {
  active: number;
  nextStart: number;
  waiters: Array<() => void>;
}

/** Tracked hosts at which idle entries are first swept; the bound then follows the live count. */
const SWEEP_FLOOR = 1024;

export class HostLimiter {
  private readonly hosts = new Map<string, HostState>();
  private sweepAt = SWEEP_FLOOR;

  constructor(private readonly concurrency: number, private readonly minDelayMs: number, private readonly clock: Clock = realClock) {
    if (!(concurrency >= 1)) throw new RangeError(`perHostConcurrency must be >= 1, got ${concurrency}`);
  }

  /** Resolves with a release function once the request may start. Rejects when `signal` aborts. */
  async acquire(host: string, signal?: AbortSignal): Promise<() => void> {
    const state = this.state(host);
    // A released slot is handed straight to the first waiter (active stays), so a new caller
    // arriving between the release and the waiter's wake-up cannot take it as well.
    if (state.active < this.concurrency && state.waiters.length === 0) state.active++;
    else {
      await new Promise<void>((resolve, reject) => {
        const wake = () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        };
        const onAbort = () => {
          const i = state.waiters.indexOf(wake);
          if (i >= 0) state.waiters.splice(i, 1);
          reject(signal!.reason);
        };
        if (signal?.aborted) return reject(signal.reason);
        signal?.addEventListener('abort', onAbort, { once: true });
        state.waiters.push(wake);
      });
    }
    const now = this.clock.now();
    const start = Math.max(now, state.nextStart);
    state.nextStart = start + this.minDelayMs;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      const next = state.waiters.shift();
      if (next) return next();
      state.active--;
      if (state.active === 0 && state.nextStart <= this.clock.now()) this.hosts.delete(host);
    };
    if (start > now) {
      try {
        await this.clock.sleep(start - now, signal);
      } catch (e) {
        release();
        throw e;
      }
    }
    return release;
  }

  /** Hosts currently tracked (for tests and metrics). */
  size(): number {
    return this.hosts.size;
  }

  /**
   * A host released before its next start time keeps its entry (the delay must still hold), and
   * nothing comes back for it if no request follows: a crawl over millions of hosts would grow
   * the map for ever. Entries that are idle and past their next start are dropped in an
   * amortised sweep once the map doubles.
   */
  private sweep(): void {
    const now = this.clock.now();
    for (const [host, s] of this.hosts) {
      if (s.active === 0 && s.waiters.length === 0 && s.nextStart <= now) this.hosts.delete(host);
    }
    this.sweepAt = Math.max(SWEEP_FLOOR, 2 * this.hosts.size);
  }

  private state(host: string): HostState {
    let s = this.hosts.get(host);
    if (!s) {
      if (this.hosts.size >= this.sweepAt) this.sweep();
      s = { active: 0, nextStart: 0, waiters: [] };
      this.hosts.set(host, s);
    }
    return s;
  }
}
