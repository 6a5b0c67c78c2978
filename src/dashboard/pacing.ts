/**
 * Request pacing for the dashboard: a request over its budget waits for its turn instead of being
 * answered at once. Rejecting with 429 does not bound the CPU a client takes: a client that loops
 * without reading Retry-After gets the next 429 as fast as the last, and each costs nearly what a
 * cached answer costs. Holding the request does bound it, because such a client sends its next
 * request only when it has the answer to the previous one.
 *
 * Each budget is a GCRA (generic cell rate algorithm): a theoretical arrival time that advances by
 * one interval per admitted request; a request may run `burst` intervals ahead of it. One budget
 * per client address and one for the whole server, so neither one busy client nor many clients
 * can take more than the configured rate. A request that would wait longer than `maxWaitMs` is
 * refused (503 with Retry-After) so that waiting requests cannot pile up without bound.
 */
export interface PacingOptions {
  /** Requests per second for the whole server; 0 turns pacing off. */
  ratePerSec: number;
  /** Requests the whole server may take at once before pacing starts. */
  burst: number;
  /** Requests per second for one client address. */
  clientRatePerSec: number;
  /** Requests one client may send at once before pacing starts (a page load is about a dozen). */
  clientBurst: number;
  /** Longest a request is held; beyond that it is refused. */
  maxWaitMs: number;
}

export const DEFAULT_PACING: PacingOptions = { ratePerSec: 100, burst: 200, clientRatePerSec: 20, clientBurst: 60, maxWaitMs: 10_000 };

/** Past this many client budgets, the idle ones are forgotten when a new client arrives. */
const MAX_CLIENTS = 10_000;
const OVERFLOW = '\u0000overflow';

class Budget {
  private tat = 0;
  constructor(private readonly intervalMs: number, private readonly toleranceMs: number) {}

  /** Milliseconds a request arriving at `now` must wait. */
  waitAt(now: number): number {
    return Math.max(0, Math.max(this.tat, now) - now - this.toleranceMs);
  }

  take(now: number): void {
    this.tat = Math.max(this.tat, now) + this.intervalMs;
  }

  idleAt(now: number): boolean {
    return this.tat <= now;
  }
}

export type Admission = { waitMs: number } | { refusedRetryAfterS: number };

export class Pacer {
  private readonly global: Budget;
  private readonly clients = new Map<string, Budget>();

  constructor(private readonly opts: PacingOptions) {
    for (const [k, v] of Object.entries(opts)) {
      if (!Number.isFinite(v) || v < 0) throw new RangeError(`pacing ${k} must be a finite number ≥ 0, got ${v}`);
    }
    this.global = this.budget(opts.ratePerSec, opts.burst);
  }

  get enabled(): boolean {
    return this.opts.ratePerSec > 0 && this.opts.clientRatePerSec > 0;
  }

  private budget(rate: number, burst: number): Budget {
    const interval = 1000 / rate;
    return new Budget(interval, interval * Math.max(0, burst - 1));
  }

  /** Reserves a turn for one request of `client` arriving at `now` (ms). */
  admit(client: string, now: number = Date.now()): Admission {
    if (!this.enabled) return { waitMs: 0 };
    const own = this.clients.get(client) ?? this.newClient(client, now);
    const waitMs = Math.max(own.waitAt(now), this.global.waitAt(now));
    if (waitMs > this.opts.maxWaitMs) return { refusedRetryAfterS: Math.max(1, Math.ceil(waitMs / 1000)) };
    own.take(now);
    this.global.take(now);
    return { waitMs };
  }

  /** A client's budget; when MAX_CLIENTS are all busy, newcomers share one overflow budget. */
  private newClient(client: string, now: number): Budget {
    if (this.clients.size >= MAX_CLIENTS) {
      for (const [k, b] of this.clients) if (b.idleAt(now)) this.clients.delete(k);
      if (this.clients.size >= MAX_CLIENTS) client = OVERFLOW;
    }
    let b = this.clients.get(client);
    if (!b) {
      b = this.budget(this.opts.clientRatePerSec, this.opts.clientBurst);
      this.clients.set(client, b);
    }
    return b;
  }

  /** Client budgets currently remembered (tests check that idle ones are forgotten). */
  get clientCount(): number {
    return this.clients.size;
  }
}
